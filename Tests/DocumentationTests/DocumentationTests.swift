import ArgumentParser
@testable import ChannelsNodeRunner
import Foundation
import Testing

/// Every Swift snippet of the README and the guide compiles: each stands in DocumentationSnippets.swift,
/// which is built with the tests.
@Suite struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A snippet's lines that must stand in the compiled file, trimmed: without imports (the file imports
    /// once at its top), `@main`, blank lines, and what only a Package.swift holds.
    static func significantLines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("import ") && $0 != "@main" }
    }

    static func swiftBlocks(in file: String) throws -> [String] {
        let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
        var blocks: [String] = []
        var current: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if current == nil, line.trimmingCharacters(in: .whitespaces) == "```swift" {
                current = []
            } else if current != nil, line.trimmingCharacters(in: .whitespaces) == "```" {
                blocks.append(current!.joined(separator: "\n"))
                current = nil
            } else {
                current?.append(line)
            }
        }
        return blocks
    }

    @Test(arguments: ["README.md", "docs/guide.md"])
    func everySnippetIsCompiled(file: String) throws {
        let compiled = try String(
            contentsOf: Self.root.appendingPathComponent("Tests/DocumentationTests/DocumentationSnippets.swift"), encoding: .utf8
        )
        let compiledLines = Self.significantLines(compiled)
        let compiledImports = Set(compiled.split(separator: "\n").filter { $0.hasPrefix("import ") }.map(String.init))
        let blocks = try Self.swiftBlocks(in: file)
        #expect(!blocks.isEmpty)
        for block in blocks where !block.hasPrefix("// Package.swift") {
            let lines = Self.significantLines(block)
            let found = lines.isEmpty || (0...(compiledLines.count - lines.count)).contains { start in
                Array(compiledLines[start..<start + lines.count]) == lines
            }
            #expect(found, "a snippet of \(file) is not in DocumentationSnippets.swift as written:\n\(block)")
            for imported in block.split(separator: "\n").filter({ $0.hasPrefix("import ") }) {
                #expect(compiledImports.contains(String(imported)), "\(file) imports a module the snippets file does not: \(imported)")
            }
        }
    }

    /// The Package.swift lines of the guide name products this package has.
    @Test func theGuidesDependencyLinesNameRealProducts() throws {
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let guide = try Self.swiftBlocks(in: "docs/guide.md").first { $0.hasPrefix("// Package.swift") } ?? ""
        let products = guide.matches(of: /\.product\(name: "(\w+)", package: "swift-channels"\)/).map { String($0.1) }
        #expect(!products.isEmpty)
        for product in products { #expect(manifest.contains(#".library(name: "\#(product)""#), "\(product)") }
    }

    /// The guide's node parses channels-node's flags.
    @Test func theGuidesNodeTakesChannelsNodesOptions() throws {
        let node = try MyNode.parse(["--redis", "redis://127.0.0.1:6379", "--layer", "core", "--log-connections"])
        #expect(node.options.logConnections)
    }
}
