import Foundation
import Testing
@testable import GGUF

/// Corrupted, truncated and hostile files: `GGUFFile` must throw a `GGUFError` naming the problem,
/// never crash, and never allocate more than the file size bounds (every count is checked against the
/// bytes that remain before anything is reserved).
@Suite struct HostileGGUFTests {
    // MARK: helpers

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// Offset just past the length-prefixed string `s` (its `occurrence`-th appearance, 0 = first).
    static func after(_ b: [UInt8], _ s: String, occurrence: Int = 0) -> Int {
        let needle = le(UInt64(s.utf8.count)) + Array(s.utf8)
        var found = 0
        var i = 0
        while i + needle.count <= b.count {
            if b[i ..< i + needle.count].elementsEqual(needle) {
                if found == occurrence { return i + needle.count }
                found += 1
            }
            i += 1
        }
        fatalError("string \(s) not found")
    }

    static func patch(_ b: inout [UInt8], at offset: Int, _ bytes: [UInt8]) {
        b.replaceSubrange(offset ..< offset + bytes.count, with: bytes)
    }

    /// Writes `bytes` and asserts that opening them throws a GGUFError naming the problem.
    static func expectRejected(_ bytes: [UInt8], _ fragments: String..., name: String = "hostile",
                               sourceLocation: SourceLocation = #_sourceLocation) {
        let path = TestFiles.write(bytes, "\(name)-\(UUID().uuidString).gguf")
        defer { try? FileManager.default.removeItem(atPath: path) }
        expectOpenFails(path, fragments, sourceLocation: sourceLocation)
    }

    static func expectOpenFails(_ path: String, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let f = try GGUFFile(path: path)
            Issue.record("opened a hostile file (\(f.tensors.count) tensors), expected an error naming \(fragments)",
                         sourceLocation: sourceLocation)
        } catch {
            let m = error.message
            #expect(!m.contains("\n"), "message is one line: \(m)", sourceLocation: sourceLocation)
            #expect(fragments.contains { m.lowercased().contains($0.lowercased()) },
                    "message '\(m)' names none of \(fragments)", sourceLocation: sourceLocation)
        }
    }

    /// A valid base file: a few metadata values and three tensors (one with four dimensions).
    static func base() throws -> [UInt8] {
        let w = GGUFWriter()
        w.set("general.architecture", "llama")
        w.set("k.flag", true)
        w.set("k.name", "value")
        w.set("k.arr", .array(elementType: .int32, [.int32(1), .int32(2), .int32(3)]))
        w.set("k.bools", .array(elementType: .bool, [.bool(true), .bool(false)]))
        w.set("k.nested", .array(elementType: .array, [.array(elementType: .uint8, [.uint8(1)])]))
        try w.addTensor(name: "ta", shape: [64, 2], type: .q4_0, data: patternBytes(72, seed: 1))
        try w.addTensor(name: "tb", shape: [32, 2, 2, 2], type: .f32, data: patternBytes(1024, seed: 2))
        try w.addTensor(name: "tc", shape: [16], type: .f32, data: patternBytes(64, seed: 3))
        return try w.bytes()
    }

    /// Offset of tensor `name`'s n_dims field in the tensor table (names are unique in `base()`).
    static func tensorInfo(_ b: [UInt8], _ name: String) -> Int { after(b, name) }

    // MARK: the base file is valid

    @Test func baseFileIsValid() throws {
        let f = try GGUFFile(path: TestFiles.write(try Self.base(), "hostile-base.gguf"))
        #expect(f.tensors.map(\.name) == ["ta", "tb", "tc"])
    }

    // MARK: not a GGUF file at all

    @Test func emptyFile() {
        Self.expectRejected([], "too small")
    }

    @Test func directory() {
        Self.expectOpenFails(TestFiles.dir, ["not a regular file"])
    }

    @Test func missingPath() {
        Self.expectOpenFails(TestFiles.path("does-not-exist.gguf"), ["cannot open", "No such file"])
    }

    @Test func textFile() {
        Self.expectRejected(Array("This is not a model, just some text that goes on for a while.".utf8), "not a GGUF file")
    }

    @Test func badMagic() throws {
        var b = try Self.base()
        Self.patch(&b, at: 0, Array("GGUG".utf8))
        Self.expectRejected(b, "not a GGUF file")
        Self.patch(&b, at: 0, Array("FUGG".utf8))  // byte-swapped magic
        Self.expectRejected(b, "not a GGUF file")
    }

    @Test(arguments: [UInt32(0), 1, 4, 0x0300_0000, .max])
    func unsupportedVersion(version: UInt32) throws {
        var b = try Self.base()
        Self.patch(&b, at: 4, Self.le(version))
        Self.expectRejected(b, "unsupported GGUF version \(version)")
    }

    @Test func version2IsAccepted() throws {
        var b = try Self.base()
        Self.patch(&b, at: 4, Self.le(UInt32(2)))
        #expect(try GGUFFile(path: TestFiles.write(b, "v2.gguf")).version == 2)
    }

    // MARK: truncation

    @Test func truncatedAtEveryByteOfTheHeader() throws {
        let b = try Self.base()
        let f = try GGUFFile(path: TestFiles.write(b, "trunc-full.gguf"))
        for cut in 0 ..< f.dataOffset {
            Self.expectRejected(Array(b[..<cut]), "truncated", "too small", "bytes left", "past the end",
                                name: "trunc\(cut)")
        }
    }

    @Test func truncatedInTheData() throws {
        let b = try Self.base()
        let f = try GGUFFile(path: TestFiles.write(b, "trunc-data-full.gguf"))
        let last = f.tensors.map { $0.offset + $0.byteCount }.max()!
        for cut in [f.dataOffset + 1, f.dataOffset + 71, f.dataOffset + 72, f.dataOffset + 500,
                    f.dataOffset + last - 1] {
            Self.expectRejected(Array(b[..<cut]), "truncated", "past the end", name: "truncdata\(cut)")
        }
        // Cutting only the padding after the last tensor leaves a valid file.
        #expect(try GGUFFile(path: TestFiles.write(Array(b[..<(f.dataOffset + last)]), "trunc-pad.gguf")).tensors.count == 3)
    }

    // MARK: absurd counts and lengths (each would allocate without the bound)

    @Test(arguments: [UInt64(1) << 62, .max, 1 << 40, 1000])
    func hugeTensorCount(count: UInt64) throws {
        var b = try Self.base()
        Self.patch(&b, at: 8, Self.le(count))
        Self.expectRejected(b, "tensor count")
    }

    @Test(arguments: [UInt64(1) << 62, .max, 1 << 40, 1000])
    func hugeMetadataCount(count: UInt64) throws {
        var b = try Self.base()
        Self.patch(&b, at: 16, Self.le(count))
        Self.expectRejected(b, "metadata count")
    }

    @Test func hugeStringLengths() throws {
        let base = try Self.base()
        // The first key's length.
        var b = base
        Self.patch(&b, at: 24, Self.le(UInt64(1) << 62))
        Self.expectRejected(b, "length of key")
        // A string value's length.
        b = base
        let v = Self.after(b, "k.name") + 4
        Self.patch(&b, at: v, Self.le(UInt64(1) << 62))
        Self.expectRejected(b, "length of value of 'k.name'")
        // A tensor name's length.
        b = base
        let t = Self.tensorInfo(b, "ta") - 2 - 8
        Self.patch(&b, at: t, Self.le(UInt64.max))
        Self.expectRejected(b, "length of name of tensor")
    }

    @Test func hugeArrayCount() throws {
        var b = try Self.base()
        let count = Self.after(b, "k.arr") + 4 + 4
        Self.patch(&b, at: count, Self.le(UInt64(1) << 62))
        Self.expectRejected(b, "element count of 'k.arr'")
        // An inner array of a nested array.
        b = try Self.base()
        let inner = Self.after(b, "k.nested") + 4 + 4 + 8 + 4
        Self.patch(&b, at: inner, Self.le(UInt64(1) << 62))
        Self.expectRejected(b, "element count of 'k.nested'")
    }

    static func nested(depth: Int) -> GGUFValue {
        depth == 1 ? .array(elementType: .int32, [.int32(7)]) : .array(elementType: .array, [nested(depth: depth - 1)])
    }

    @Test func nestedArraysDeeperThanTheLimit() throws {
        let limit = Parser.maxArrayDepth
        let ok = GGUFWriter()
        ok.set("deep", Self.nested(depth: limit))
        let f = try GGUFFile(path: TestFiles.write(try ok.bytes(), "deep-ok.gguf"))
        #expect(f.metadata["deep"] == Self.nested(depth: limit))

        let w = GGUFWriter()
        w.set("deep", Self.nested(depth: limit + 1))
        Self.expectRejected(try w.bytes(), "nests arrays deeper than \(limit)")

        // A long chain of array headers (what a hostile file would use to exhaust the stack).
        var b = Self.le(GGUFFile.magic) + Self.le(UInt32(3)) + Self.le(UInt64(0)) + Self.le(UInt64(1))
        b += Self.le(UInt64(1)) + Array("d".utf8) + Self.le(UInt32(9))
        for _ in 0 ..< 100_000 { b += Self.le(UInt32(9)) + Self.le(UInt64(1)) }
        Self.expectRejected(b, "nests arrays deeper")
    }

    // MARK: unknown types

    @Test(arguments: [UInt32(13), 255, .max])
    func unknownValueType(raw: UInt32) throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.after(b, "k.flag"), Self.le(raw))
        Self.expectRejected(b, "unknown value type \(raw)")
        b = try Self.base()
        Self.patch(&b, at: Self.after(b, "k.arr") + 4, Self.le(raw))
        Self.expectRejected(b, "array of unknown type \(raw)")
    }

    @Test(arguments: [UInt32(4), 5, 16, 20, 31, 39, 1000, .max])
    func unknownTensorType(raw: UInt32) throws {
        var b = try Self.base()
        let info = Self.tensorInfo(b, "tc")  // 1 dimension
        Self.patch(&b, at: info + 4 + 8, Self.le(raw))
        Self.expectRejected(b, "unsupported type \(raw)")
    }

    // MARK: shapes

    @Test(arguments: [UInt32(0), 5, 100, .max])
    func badDimensionCount(n: UInt32) throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.tensorInfo(b, "ta"), Self.le(n))
        Self.expectRejected(b, "has \(n) dimensions")
    }

    @Test(arguments: [UInt64(0), 1 << 31, 1 << 40, .max])
    func zeroOrHugeDimension(dim: UInt64) throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.tensorInfo(b, "tb") + 4 + 8, Self.le(dim))  // dimension 1
        Self.expectRejected(b, "dimension 1 of", "'tb' dimension 1 is \(dim)")
    }

    @Test func elementCountOverflow() throws {
        var b = try Self.base()
        let info = Self.tensorInfo(b, "tb")
        for d in 0 ..< 4 { Self.patch(&b, at: info + 4 + 8 * d, Self.le(UInt64(Int32.max - 31))) }
        Self.expectRejected(b, "too many elements")
        // Dimensions that multiply to exactly 2^64 (wrapping to 0 in unchecked arithmetic).
        b = try Self.base()
        for d in 0 ..< 4 { Self.patch(&b, at: info + 4 + 8 * d, Self.le(UInt64(1) << 16)) }
        Self.expectRejected(b, "too many elements")
    }

    @Test func rowLengthNotAMultipleOfTheBlockSize() throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.tensorInfo(b, "ta") + 4, Self.le(UInt64(48)))
        Self.expectRejected(b, "row length 48 is not a multiple of Q4_0's block size 32")
    }

    // MARK: offsets

    @Test func misalignedOffset() throws {
        let b0 = try Self.base()
        let f = try GGUFFile(path: TestFiles.write(b0, "mis-base.gguf"))
        var b = b0
        Self.patch(&b, at: Self.tensorInfo(b, "tc") + 4 + 8 + 4, Self.le(UInt64(f.tensor(named: "tc")!.offset + 4)))
        Self.expectRejected(b, "is not aligned to 32")
    }

    @Test(arguments: [UInt64(1) << 40, UInt64.max - 31, UInt64(1) << 63])
    func offsetPastTheEnd(offset: UInt64) throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.tensorInfo(b, "tc") + 4 + 8 + 4, Self.le(offset))
        Self.expectRejected(b, "beyond the end of the file")
    }

    @Test func dataRunningPastTheEnd() throws {
        let b0 = try Self.base()
        let f = try GGUFFile(path: TestFiles.write(b0, "past-base.gguf"))
        var b = b0
        let dataSize = f.fileSize - f.dataOffset
        Self.patch(&b, at: Self.tensorInfo(b, "tb") + 4 + 32 + 4, Self.le(UInt64(dataSize - 32)))
        Self.expectRejected(b, "'tb' data", "runs past the end")
    }

    @Test func overlappingTensors() throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.tensorInfo(b, "tb") + 4 + 32 + 4, Self.le(UInt64(64)))  // inside ta's 72 bytes
        Self.expectRejected(b, "overlap")
        b = try Self.base()
        Self.patch(&b, at: Self.tensorInfo(b, "tc") + 4 + 8 + 4, Self.le(UInt64(0)))  // same start as ta
        Self.expectRejected(b, "overlap")
    }

    // MARK: duplicates

    @Test func duplicateKeys() throws {
        var b = try Self.base()
        // "k.name" -> "k.flag": two entries named k.flag.
        Self.patch(&b, at: Self.after(b, "k.name") - 4, Array("flag".utf8))
        Self.expectRejected(b, "duplicate metadata key 'k.flag'")
    }

    @Test func duplicateTensorNames() throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.after(b, "tc") - 2, Array("ta".utf8))
        Self.expectRejected(b, "duplicate tensor name 'ta'")
    }

    @Test func emptyKeyAndEmptyTensorName() throws {
        var b = Self.le(GGUFFile.magic) + Self.le(UInt32(3)) + Self.le(UInt64(0)) + Self.le(UInt64(1))
            + Self.le(UInt64(0)) + Self.le(UInt32(0)) + [1]
        Self.expectRejected(b + [UInt8](repeating: 0, count: 8), "empty key")
        b = Self.le(GGUFFile.magic) + Self.le(UInt32(3)) + Self.le(UInt64(1)) + Self.le(UInt64(0))
            + Self.le(UInt64(0)) + Self.le(UInt32(1)) + Self.le(UInt64(32)) + Self.le(UInt32(0)) + Self.le(UInt64(0))
        Self.expectRejected(b + [UInt8](repeating: 0, count: 256), "empty name")
    }

    // MARK: bad values

    @Test func invalidUTF8() throws {
        let cases: [(String, Int, String)] = [
            ("k.name", 4 + 8, "value of 'k.name' is not valid UTF-8"),  // first byte of the value string
            ("k.flag", -1, "key of metadata entry"),                    // last byte of a key
            ("tb", -1, "name of tensor 1"),                             // last byte of a tensor name
        ]
        for (anchor, delta, message) in cases {
            for bad: [UInt8] in [[0xFF], [0xC0], [0x80], [0xED]] {
                var b = try Self.base()
                Self.patch(&b, at: Self.after(b, anchor) + delta, bad)
                Self.expectRejected(b, message)
            }
        }
    }

    @Test(arguments: [UInt8(2), 0x80, 0xFF])
    func badBoolByte(v: UInt8) throws {
        var b = try Self.base()
        Self.patch(&b, at: Self.after(b, "k.flag") + 4, [v])
        Self.expectRejected(b, "'k.flag' has bool value \(v)")
        b = try Self.base()
        Self.patch(&b, at: Self.after(b, "k.bools") + 4 + 4 + 8 + 1, [v])
        Self.expectRejected(b, "'k.bools' has bool value \(v)")
    }

    @Test(arguments: [UInt32(0), 3, 48, 100, 1 << 21, .max])
    func badAlignment(a: UInt32) throws {
        let w = GGUFWriter(alignment: 64)
        try w.addTensor(name: "t", shape: [32], type: .f32, data: patternBytes(128, seed: 9))
        var b = try w.bytes()
        Self.patch(&b, at: Self.after(b, "general.alignment") + 4, Self.le(a))
        Self.expectRejected(b, "general.alignment \(a) is not a power of two")
    }

    @Test func alignmentOfTheWrongType() throws {
        let w = GGUFWriter(alignment: 64)
        var b = try w.bytes()
        Self.patch(&b, at: Self.after(b, "general.alignment"), Self.le(GGUFValueType.int32.rawValue))
        Self.expectRejected(b, "general.alignment must be a uint32")
    }

    // MARK: random corruption never crashes

    @Test func randomByteFlipsNeverCrash() throws {
        let b0 = try Self.base()
        let f = try GGUFFile(path: TestFiles.write(b0, "flip-base.gguf"))
        var rng = SplitMix64(seed: 42)
        var rejected = 0
        for i in 0 ..< 400 {
            var b = b0
            for _ in 0 ..< 1 + Int(rng.next() % 3) {
                let at = Int(rng.next() % UInt64(f.dataOffset))
                b[at] = UInt8(truncatingIfNeeded: rng.next())
            }
            let path = TestFiles.write(b, "flip\(i).gguf")
            do { _ = try GGUFFile(path: path) } catch { rejected += 1; #expect(!error.message.isEmpty) }
            try? FileManager.default.removeItem(atPath: path)
        }
        #expect(rejected > 0)
    }
}
