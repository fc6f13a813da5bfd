import GGUF

/// GGUF tensor names (llama.cpp's convention) and the shapes each must have.
public enum TensorNames {
    public static let tokenEmbedding = "token_embd.weight"
    public static let outputNorm = "output_norm.weight"
    public static let output = "output.weight"

    public static func attnNorm(_ l: Int) -> String { "blk.\(l).attn_norm.weight" }
    public static func attnQ(_ l: Int) -> String { "blk.\(l).attn_q.weight" }
    public static func attnK(_ l: Int) -> String { "blk.\(l).attn_k.weight" }
    public static func attnV(_ l: Int) -> String { "blk.\(l).attn_v.weight" }
    public static func attnQBias(_ l: Int) -> String { "blk.\(l).attn_q.bias" }
    public static func attnKBias(_ l: Int) -> String { "blk.\(l).attn_k.bias" }
    public static func attnVBias(_ l: Int) -> String { "blk.\(l).attn_v.bias" }
    public static func attnOutput(_ l: Int) -> String { "blk.\(l).attn_output.weight" }
    public static func ffnNorm(_ l: Int) -> String { "blk.\(l).ffn_norm.weight" }
    public static func ffnGate(_ l: Int) -> String { "blk.\(l).ffn_gate.weight" }
    public static func ffnUp(_ l: Int) -> String { "blk.\(l).ffn_up.weight" }
    public static func ffnDown(_ l: Int) -> String { "blk.\(l).ffn_down.weight" }

    /// Every tensor of layer `l` with its expected shape (innermost first).
    public static func layerTensors(_ c: ModelConfig, layer l: Int) -> [(name: String, shape: [Int])] {
        let d = c.embeddingLength
        var list: [(String, [Int])] = [
            (attnNorm(l), [d]),
            (attnQ(l), [d, c.qDim]),
            (attnK(l), [d, c.kvDim]),
            (attnV(l), [d, c.kvDim]),
            (attnOutput(l), [c.qDim, d]),
            (ffnNorm(l), [d]),
            (ffnGate(l), [d, c.feedForwardLength]),
            (ffnUp(l), [d, c.feedForwardLength]),
            (ffnDown(l), [c.feedForwardLength, d]),
        ]
        if c.hasQKVBias {
            list += [(attnQBias(l), [c.qDim]), (attnKBias(l), [c.kvDim]), (attnVBias(l), [c.kvDim])]
        }
        return list
    }

    /// Checks that every tensor the config implies exists with the right shape.
    static func validate(_ c: ModelConfig, in gguf: GGUFFile) throws {
        var expected: [(name: String, shape: [Int])] = [(outputNorm, [c.embeddingLength])]
        if !c.tiedOutput { expected.append((output, [c.embeddingLength, c.vocabSize])) }
        for l in 0..<c.layerCount { expected += layerTensors(c, layer: l) }
        for (name, shape) in expected {
            guard let t = gguf.tensor(named: name) else { throw ModelConfigError("tensor \(name) is missing") }
            // A trailing dimension of 1 is the same shape.
            var actual = t.shape
            while actual.count > shape.count, actual.last == 1 { actual.removeLast() }
            guard actual == shape else {
                throw ModelConfigError("tensor \(name) has shape \(t.shape), expected \(shape)")
            }
        }
    }
}
