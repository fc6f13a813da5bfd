import Foundation
@testable import GGUF

/// A fresh temporary directory per test process.
enum TestFiles {
    static let dir: String = {
        let d = NSTemporaryDirectory() + "gguf-tests-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    static func path(_ name: String) -> String { dir + "/" + name }

    @discardableResult
    static func write(_ bytes: [UInt8], _ name: String) -> String {
        let p = path(name)
        _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
        return p
    }
}

/// Deterministic test bytes.
func patternBytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// Every metadata value type, nested arrays and empty arrays included.
let allValueTypes: [(String, GGUFValue)] = [
    ("t.u8", .uint8(200)),
    ("t.i8", .int8(-100)),
    ("t.u16", .uint16(60000)),
    ("t.i16", .int16(-30000)),
    ("t.u32", .uint32(4_000_000_000)),
    ("t.i32", .int32(-2_000_000_000)),
    ("t.f32", .float32(3.25)),
    ("t.bool.true", .bool(true)),
    ("t.bool.false", .bool(false)),
    ("t.string", .string("héllo ▁wörld ✓")),
    ("t.string.empty", .string("")),
    ("t.u64", .uint64(18_000_000_000_000_000_000)),
    ("t.i64", .int64(-9_000_000_000_000_000_000)),
    ("t.f64", .float64(-1.0e300)),
    ("t.arr.u8", .array(elementType: .uint8, [.uint8(1), .uint8(2), .uint8(255)])),
    ("t.arr.i32", .array(elementType: .int32, [.int32(-1), .int32(7)])),
    ("t.arr.f32", .array(elementType: .float32, [.float32(0.5), .float32(-2)])),
    ("t.arr.f64", .array(elementType: .float64, [.float64(1e-10)])),
    ("t.arr.bool", .array(elementType: .bool, [.bool(true), .bool(false), .bool(true)])),
    ("t.arr.string", .array(elementType: .string, [.string("a"), .string(""), .string("<0x0A>")])),
    ("t.arr.u64", .array(elementType: .uint64, [.uint64(.max)])),
    ("t.arr.i16", .array(elementType: .int16, [.int16(-5)])),
    ("t.arr.empty", .array(elementType: .int32, [])),
    ("t.arr.empty.string", .array(elementType: .string, [])),
    ("t.arr.nested", .array(elementType: .array, [
        .array(elementType: .int32, [.int32(1), .int32(2)]),
        .array(elementType: .int32, []),
        .array(elementType: .int32, [.int32(3)]),
    ])),
    ("t.arr.nested.strings", .array(elementType: .array, [
        .array(elementType: .string, [.string("x"), .string("yz")]),
    ])),
    ("t.arr.nested3", .array(elementType: .array, [
        .array(elementType: .array, [.array(elementType: .uint8, [.uint8(9)])]),
    ])),
]

/// A small file: metadata of every type and tensors of several types, with recorded data.
func makeSampleWriter(alignment: Int = 32) throws -> (GGUFWriter, [String: [UInt8]]) {
    let w = GGUFWriter(alignment: alignment)
    w.set("general.architecture", "llama")
    for (k, v) in allValueTypes { w.set(k, v) }
    let specs: [(String, [Int], GGMLType)] = [
        ("token_embd.weight", [64, 10], .q8_0),
        ("blk.0.attn_norm.weight", [64], .f32),
        ("blk.0.attn_q.weight", [256, 3], .q4_K),
        ("blk.0.ffn_down.weight", [256, 2], .q6_K),
        ("blk.1.x.weight", [32, 3, 2, 2], .f16),
        ("odd.weight", [7], .f32),
        ("output.weight", [32, 5], .q4_0),
    ]
    var data: [String: [UInt8]] = [:]
    for (i, (name, shape, type)) in specs.enumerated() {
        let n = type.rowBytes(shape[0])! * shape.dropFirst().reduce(1, *)
        let bytes = patternBytes(n, seed: UInt64(i + 1))
        data[name] = bytes
        try w.addTensor(name: name, shape: shape, type: type, data: bytes)
    }
    return (w, data)
}
