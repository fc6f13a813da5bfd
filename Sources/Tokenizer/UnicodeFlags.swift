/// Code point classes exactly as llama.cpp's `unicode_cpt_flags` define them (src/unicode-data.cpp,
/// generated from Unicode 15.1). Computed from Swift's Unicode tables, with code points assigned after
/// Unicode 15.1 treated as unassigned, so that the result matches llama.cpp's table bit for bit.
struct CodepointFlags: OptionSet, Sendable {
    let rawValue: UInt16
    static let undefined = CodepointFlags(rawValue: 0x0001)
    static let number = CodepointFlags(rawValue: 0x0002)       // \p{N}
    static let letter = CodepointFlags(rawValue: 0x0004)       // \p{L}
    static let separator = CodepointFlags(rawValue: 0x0008)    // \p{Z}
    static let accentMark = CodepointFlags(rawValue: 0x0010)   // \p{M}
    static let punctuation = CodepointFlags(rawValue: 0x0020)  // \p{P}
    static let symbol = CodepointFlags(rawValue: 0x0040)       // \p{S}
    static let control = CodepointFlags(rawValue: 0x0080)      // \p{C}
    static let whitespace = CodepointFlags(rawValue: 0x0100)   // \s

    /// Flags of an out-of-range position (llama.cpp's `unicode_cpt_flags{}`): no bit set.
    static let outOfRange = CodepointFlags([])

    @inline(__always) var isLetter: Bool { contains(.letter) }
    @inline(__always) var isNumber: Bool { contains(.number) }
    @inline(__always) var isWhitespace: Bool { contains(.whitespace) }
    /// llama.cpp's `as_uint() != 0`: true for every real code point (unassigned ones carry `undefined`).
    @inline(__always) var isAny: Bool { rawValue != 0 }
    /// Category bits only (llama.cpp's `category_flag()`).
    @inline(__always) var category: UInt16 { rawValue & 0x00FF }
}

enum UnicodeFlags {
    /// Flags for the Basic Multilingual Plane, computed once.
    private static let bmp: [UInt16] = (0..<0x10000).map { compute(UInt32($0)).rawValue }

    @inline(__always)
    static func flags(_ cp: UInt32) -> CodepointFlags {
        if cp < 0x10000 { return CodepointFlags(rawValue: bmp[Int(cp)]) }
        return compute(cp)
    }

    static func isWhitespace(_ cp: UInt32) -> Bool {
        switch cp {
        case 0x09...0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: true
        default: false
        }
    }

    static func compute(_ cp: UInt32) -> CodepointFlags {
        guard let s = Unicode.Scalar(cp) else { return .control }  // surrogates: Cs
        var f: CodepointFlags
        let props = s.properties
        if let age = props.age, (age.major, age.minor) <= (15, 1) {
            switch props.generalCategory {
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: f = .letter
            case .decimalNumber, .letterNumber, .otherNumber: f = .number
            case .spaceSeparator, .lineSeparator, .paragraphSeparator: f = .separator
            case .nonspacingMark, .spacingMark, .enclosingMark: f = .accentMark
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation: f = .punctuation
            case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol: f = .symbol
            case .control, .format, .surrogate, .privateUse: f = .control
            case .unassigned: f = .undefined
            @unknown default: f = .undefined
            }
        } else {
            f = .undefined
        }
        if isWhitespace(cp) { f.insert(.whitespace) }
        return f
    }
}
