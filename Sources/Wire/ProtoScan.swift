/// A walk over protobuf wire format that allocates nothing: every tag, varint and length is checked to lie
/// inside the buffer, and per-field counts are gathered, so limits are enforced before protobuf-c's unpack
/// allocates arrays sized by the input.
struct ProtoScan {
    struct Field {
        /// Times the field number occurs.
        var occurrences = 0
        /// Elements, counting each value of a packed run (for fields declared as packed varints).
        var elements = 0
        /// Largest length-delimited occurrence in bytes.
        var maxLength = 0
        /// Byte range of the last length-delimited occurrence (for nested scans).
        var lastRange: Range<Int> = 0..<0
    }

    /// Index = field number; numbers above `fields.count - 1` are counted in `unknown`.
    var fields: [Field]
    var unknown = 0

    /// - Parameters:
    ///   - maxField: highest field number the message defines.
    ///   - packedVarints: bit n set = field n is a repeated varint (packed or not).
    init(_ b: UnsafeRawBufferPointer, maxField: Int, packedVarints: UInt64 = 0) throws(WireError) {
        fields = [Field](repeating: Field(), count: maxField + 1)
        var i = 0
        while i < b.count {
            let key = try Self.varint(b, &i)
            let number = key >> 3, wireType = key & 7
            guard number > 0, number <= 536_870_911 else { throw .malformed("field number \(number)") }
            let known = number <= UInt64(maxField)
            let n = Int(number)
            switch wireType {
            case 0:
                _ = try Self.varint(b, &i)
                if known { fields[n].occurrences += 1; fields[n].elements += 1 }
            case 1, 5:
                let size = wireType == 1 ? 8 : 4
                guard b.count - i >= size else { throw .malformed("truncated fixed\(size * 8) field \(number)") }
                i += size
                if known { fields[n].occurrences += 1; fields[n].elements += 1 }
            case 2:
                let len = try Self.varint(b, &i)
                guard len <= UInt64(b.count - i) else {
                    throw .malformed("field \(number) claims \(len) bytes, \(b.count - i) remain")
                }
                let range = i..<(i + Int(len))
                i = range.upperBound
                guard known else { break }
                fields[n].occurrences += 1
                fields[n].maxLength = max(fields[n].maxLength, range.count)
                fields[n].lastRange = range
                if n < 64, packedVarints & (1 << UInt64(n)) != 0 {
                    fields[n].elements += try Self.countVarints(UnsafeRawBufferPointer(rebasing: b[range]), field: n)
                } else {
                    fields[n].elements += 1
                }
            default:
                throw .malformed("wire type \(wireType) (field \(number))")
            }
            if !known { unknown += 1 }
        }
    }

    subscript(_ n: Int) -> Field { fields[n] }

    static func varint(_ b: UnsafeRawBufferPointer, _ i: inout Int) throws(WireError) -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard i < b.count else { throw .malformed("truncated varint") }
            guard shift < 64 else { throw .malformed("varint longer than 10 bytes") }
            let byte = b[i]
            i += 1
            v |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return v }
            shift += 7
        }
    }

    /// Values in a packed varint run; every varint must be complete and at most 10 bytes.
    static func countVarints(_ b: UnsafeRawBufferPointer, field: Int) throws(WireError) -> Int {
        var count = 0, run = 0
        for byte in b {
            run += 1
            guard run <= 10 else { throw .malformed("varint longer than 10 bytes in field \(field)") }
            if byte & 0x80 == 0 { count += 1; run = 0 }
        }
        guard run == 0 else { throw .malformed("truncated packed field \(field)") }
        return count
    }
}
