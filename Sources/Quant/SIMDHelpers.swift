/// Small SIMD building blocks for the integer dot-product kernels.
/// Written so that LLVM can pick pmaddwd / vpmaddwd for `madd` on any x86-64 level.

typealias I16x16 = SIMD16<Int16>
typealias I32x8 = SIMD8<Int32>
typealias U8x16 = SIMD16<UInt8>

/// Sum of adjacent Int16 products widened to Int32 (x86 `pmaddwd`). Lane order of the result is
/// irrelevant for dot products; only its total matters.
@inline(__always)
func madd(_ a: I16x16, _ b: I16x16) -> I32x8 {
    let a0 = I32x8(truncatingIfNeeded: a.evenHalf), a1 = I32x8(truncatingIfNeeded: a.oddHalf)
    let b0 = I32x8(truncatingIfNeeded: b.evenHalf), b1 = I32x8(truncatingIfNeeded: b.oddHalf)
    return a0 &* b0 &+ a1 &* b1
}

/// Zero-extends 16 bytes to 16 Int16 lanes.
@inline(__always)
func widen(_ v: U8x16) -> I16x16 { I16x16(truncatingIfNeeded: v) }

/// Spreads 16 bits of `bits` (bit j -> lane j) into lanes holding `value` where the bit is set, else 0.
@inline(__always)
func spreadBits(_ bits: UInt32, _ value: UInt8) -> U8x16 {
    let lo = (UInt64(bits & 0xff) &* 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201
    let hi = (UInt64((bits >> 8) & 0xff) &* 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201
    let v = unsafeBitCast(SIMD2<UInt64>(lo, hi), to: U8x16.self)
    return U8x16(repeating: 0).replacing(with: value, where: v .!= 0)
}

extension UnsafeRawPointer {
    @inline(__always) func v8(_ o: Int) -> U8x16 { loadUnaligned(fromByteOffset: o, as: U8x16.self) }
    @inline(__always) func i16x16(_ o: Int) -> I16x16 { loadUnaligned(fromByteOffset: o, as: I16x16.self) }
}
