/// One entry of a GGUF file's tensor table.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions innermost first, as ggml numbers them: `shape[0]` is the row length (ne0).
    public let shape: [Int]
    public let type: GGMLType
    /// Offset of the tensor's data from the start of the data section.
    public let offset: Int
    /// Size of the tensor's data in bytes.
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }
    /// Rows of length `shape[0]` (all outer dimensions multiplied).
    public var rowCount: Int { shape.dropFirst().reduce(1, *) }
    public var rowBytes: Int { byteCount / max(rowCount, 1) }

    public init(name: String, shape: [Int], type: GGMLType, offset: Int, byteCount: Int) {
        self.name = name
        self.shape = shape
        self.type = type
        self.offset = offset
        self.byteCount = byteCount
    }
}
