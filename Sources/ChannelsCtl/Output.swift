import ChannelsProtocol
import OrderedCollections

#if canImport(Glibc)
import Glibc
#endif

/// Prints rows as an aligned table, or values as JSON.
enum Output {
    static func table(_ header: [String], _ rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows {
            for (index, cell) in row.enumerated() where index < widths.count { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        print(line(header))
        for row in rows { print(line(row)) }
    }

    static func json(_ value: MessageValue) {
        print((try? JSON.serialize(value)) ?? "null")
    }

    static func object(_ pairs: KeyValuePairs<String, MessageValue>) -> MessageValue {
        .map(OrderedDictionary(uniqueKeysWithValues: pairs.map { ($0.key, $0.value) }))
    }

    /// `2026-11-21 17:40:03` (UTC) for a Unix time.
    static func time(_ seconds: Double) -> String {
        var raw = time_t(seconds)
        var parts = tm()
        gmtime_r(&raw, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}

extension String {
    func padding(toLength length: Int, withPad pad: String, startingAt _: Int) -> String {
        count >= length ? self : self + String(repeating: pad, count: length - count)
    }
}
