/// Name-value pairs in one buffer of bytes, names and values each after its length: a request's headers, a
/// route's parameters.
///
/// A connection keeps its scope for its whole life (its consumer may read it); as an array of strings the
/// headers took an allocation for the array and one for each name or value past 15 bytes, about 400 bytes of
/// an idle connection, and a one-entry dictionary of parameters 140. Reading them back is rare (middleware,
/// `connect()`, the Django bridge's scope).
struct PackedPairs: Sendable {
    private var bytes: [UInt8] = []

    init(_ pairs: [(name: String, value: String)]) {
        guard !pairs.isEmpty else { return }
        bytes.reserveCapacity(pairs.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
        for pair in pairs {
            append(pair.name)
            append(pair.value)
        }
    }

    init(_ pairs: [String: String]) {
        self.init(pairs.map { (name: $0.key, value: $0.value) })
    }

    /// Every pair, in order.
    var all: [(name: String, value: String)] {
        var pairs: [(name: String, value: String)] = []
        var index = 0
        while index < bytes.count {
            let name = read(at: &index)
            let value = read(at: &index)
            pairs.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        return pairs
    }

    /// The value of the first pair whose name is `name` (compared as bytes).
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
