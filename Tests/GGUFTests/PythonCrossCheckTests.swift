import Foundation
import Testing
@testable import GGUF

/// Cross-checks a written file with the `gguf` Python package's GGUFReader, an independent reader.
/// Skipped (with a printed note) when python3 or the package is missing; the Swift round trip
/// in GGUFWriterTests always runs.
@Suite struct PythonCrossCheckTests {
    static let script = #"""
import sys, json
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
def s(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, float): return repr(v)
    return str(v)
fields = {}
for name, f in r.fields.items():
    if name.startswith("GGUF."): continue
    c = f.contents()
    leaves = c if isinstance(c, list) else [c]
    fields[name] = {"types": [int(t) for t in f.types], "values": [s(v) for v in leaves]}
def fnv(b):
    h = 0xcbf29ce484222325
    for x in b: h = ((h ^ x) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return str(h)
tensors = [{"name": t.name, "type": str(int(t.tensor_type)), "shape": [str(int(d)) for d in t.shape],
            "n_bytes": str(int(t.n_bytes)), "data_offset": str(int(t.data_offset)), "fnv": fnv(t.data.tobytes())}
           for t in r.tensors]
print(json.dumps({"fields": fields, "tensors": tensors, "alignment": str(r.alignment),
                  "keys": [k for k in r.fields if not k.startswith("GGUF.")]}))
"""#

    static func python(_ args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = Pipe()
        do { try p.run() } catch { return (-1, "") }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func leaves(_ v: GGUFValue) -> [String] {
        switch v {
        case .uint8(let x): ["\(x)"]
        case .int8(let x): ["\(x)"]
        case .uint16(let x): ["\(x)"]
        case .int16(let x): ["\(x)"]
        case .uint32(let x): ["\(x)"]
        case .int32(let x): ["\(x)"]
        case .uint64(let x): ["\(x)"]
        case .int64(let x): ["\(x)"]
        case .float32(let x): ["\(Double(x))"]
        case .float64(let x): ["\(x)"]
        case .bool(let x): [x ? "true" : "false"]
        case .string(let x): [x]
        case .array(_, let a): a.flatMap(leaves)
        }
    }

    /// The type list GGUFReader reports: the array chain down to the first leaf (none for an empty array).
    static func types(_ v: GGUFValue) -> [Int] {
        if case .array(_, let a) = v { return [9] + (a.first.map(types) ?? []) }
        return [Int(v.type.rawValue)]
    }

    static func fnv(_ b: UnsafeRawBufferPointer) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in b { h = (h ^ UInt64(x)) &* 0x100_0000_01b3 }
        return "\(h)"
    }

    @Test(arguments: [32, 64])
    func ggufPythonReaderAgrees(alignment: Int) throws {
        guard Self.python(["-c", "import gguf, numpy"]).0 == 0 else {
            print("note: python3 with the gguf package is not available; skipping the GGUFReader cross-check")
            return
        }
        let (w, _) = try makeSampleWriter(alignment: alignment)
        let path = TestFiles.path("pycheck\(alignment).gguf")
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        let (rc, json) = Self.python(["-c", Self.script, path])
        try #require(rc == 0, "GGUFReader failed on the written file")
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let fields = try #require(obj["fields"] as? [String: [String: Any]])
        #expect(obj["keys"] as? [String] == f.metadataKeys)
        #expect(obj["alignment"] as? String == "\(alignment)")
        for key in f.metadataKeys {
            let v = f.metadata[key]!
            let pf = try #require(fields[key], "\(key) missing in GGUFReader")
            #expect(pf["types"] as? [Int] == Self.types(v), "\(key) types")
            #expect(pf["values"] as? [String] == Self.leaves(v), "\(key) values")
        }
        let tensors = try #require(obj["tensors"] as? [[String: Any]])
        #expect(tensors.count == f.tensors.count)
        for (p, t) in zip(tensors, f.tensors) {
            #expect(p["name"] as? String == t.name)
            #expect(p["type"] as? String == "\(t.type.rawValue)")
            #expect(p["shape"] as? [String] == t.shape.map { "\($0)" })
            #expect(p["n_bytes"] as? String == "\(t.byteCount)")
            #expect(p["data_offset"] as? String == "\(f.dataOffset + t.offset)")
            #expect(p["fnv"] as? String == Self.fnv(f.data(for: t)), "\(t.name) data")
        }
    }
}
