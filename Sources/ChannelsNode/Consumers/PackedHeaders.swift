/// Request headers in one buffer of bytes, names and values each after its length.
///
/// A connection keeps its handshake's headers for its whole life (its consumer may read them); as an array
/// of strings they took an allocation for the array and one for each name or value past 15 bytes, about
/// 400 bytes of an idle connection. Reading them back is rare (middleware, the Django bridge's scope).
struct PackedHeaders: Sendable {
    private var bytes: [UInt8] = []

    init(_ headers: [(name: String, value: String)]) {
        guard !headers.isEmpty else { return }
        bytes.reserveCapacity(headers.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
        for header in headers {
            append(header.name)
            append(header.value)
        }
    }

    /// Every header, in order.
    var all: [(name: String, value: String)] {
        var headers: [(name: String, value: String)] = []
        var index = 0
        while index < bytes.count {
            let name = read(at: &index)
            let value = read(at: &index)
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return headers
    }

    /// The value of the first header whose name is `name` (compared as bytes).
    func first(named name: String) -> String? {
        var index = 0
        while index < bytes.count {
            let candidate = read(at: &index)
            let value = read(at: &index)
            if candidate.elementsEqual(name.utf8) { return String(decoding: value, as: UTF8.self) }
        }
        return nil
    }

    private mutating func append(_ text: String) {
        // The length as a varint: seven bits a byte, low bits first.
        var length = text.utf8.count
        repeat {
            let low = UInt8(length & 0x7f)
            length >>= 7
            bytes.append(length == 0 ? low : low | 0x80)
        } while length > 0
        bytes.append(contentsOf: text.utf8)
    }

    private func read(at index: inout Int) -> ArraySlice<UInt8> {
        var length = 0
        var shift = 0
        while true {
            let byte = bytes[index]
            index += 1
            length |= Int(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
        }
        defer { index += length }
        return bytes[index..<(index + length)]
    }
}
