#if canImport(Glibc)
import Glibc
#endif
import Compute
import GGUF
import Wire

/// The model is not on this worker's host (or is a different file there): the coordinator streams it.
public struct ModelUnavailable: Error, CustomStringConvertible {
    public let description: String
}

/// A worker's local copy of a model streamed by the coordinator: a sparse file of the model's full size
/// in which only the received ranges (the header and the worker's tensors) hold data, so that it loads
/// through the same mmap path as a local file. One model at a time; the copy is unlinked once loaded
/// (the mapping keeps it alive) or when another model starts arriving.
final class WeightReceiver {
    /// Largest model file accepted (a hostile size cannot make a huge sparse file).
    static let maxFileSize: UInt64 = 1 << 41
    let directory: String
    private var fd: Int32 = -1
    private var digest: UInt64 = 0
    private var size: UInt64 = 0
    private(set) var receivedBytes: UInt64 = 0

    init(directory: String) { self.directory = directory }
    deinit { discard() }

    func path(for digest: UInt64) -> String {
        let hex = String(digest, radix: 16)
        return "\(directory)/streamed-\(getpid())-\(String(repeating: "0", count: 16 - hex.count) + hex).gguf"
    }

    /// Writes one chunk; starts a new copy when the chunk belongs to another model.
    func receive(_ chunk: WeightChunk) throws {
        guard chunk.modelDigest != 0, chunk.fileSize > 0, chunk.fileSize <= Self.maxFileSize else {
            throw ComputeError("weight chunk for a \(chunk.fileSize)-byte model (digest \(chunk.modelDigest)) refused")
        }
        if fd < 0 || chunk.modelDigest != digest || chunk.fileSize != size {
            discard()
            var prefix = ""
            for part in directory.split(separator: "/") { prefix += "/" + part; mkdir(prefix, 0o700) }
            var fs = statvfs()
            if statvfs(directory, &fs) == 0 {
                let free = UInt64(fs.f_bavail) * UInt64(fs.f_frsize)
                // Sparse: only this shard's tensors take space, but refuse a disk that cannot hold even a tenth.
                guard free >= chunk.fileSize / 10 else {
                    throw ComputeError("\(directory) has \(free) bytes free; the streamed model needs up to \(chunk.fileSize)")
                }
            }
            let p = path(for: chunk.modelDigest)
            let f = Glibc.open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard f >= 0 else { throw ComputeError("cannot create \(p): \(String(cString: strerror(errno)))") }
            guard ftruncate(f, off_t(chunk.fileSize)) == 0 else {
                Glibc.close(f)
                unlink(p)
                throw ComputeError("cannot size \(p): \(String(cString: strerror(errno)))")
            }
            fd = f
            digest = chunk.modelDigest
            size = chunk.fileSize
            receivedBytes = 0
        }
        try chunk.data.withUnsafeBytes { b in
            var done = 0
            while done < b.count {
                let n = pwrite(fd, b.baseAddress! + done, b.count - done, off_t(chunk.offset) + off_t(done))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw ComputeError("writing the streamed model: \(String(cString: strerror(errno)))") }
                done += n
            }
        }
        receivedBytes += UInt64(chunk.data.count)
    }

    /// Opens the received copy of the model `digest` and checks its header against the digest.
    func open(digest expected: UInt64) throws -> GGUFFile {
        guard fd >= 0, digest == expected else {
            throw ModelUnavailable(description: "no streamed copy of model \(String(expected, radix: 16)) was received")
        }
        let file = try GGUFFile(path: path(for: digest))
        guard file.digest == expected else {
            throw ComputeError("the streamed model's header does not match its digest (incomplete transfer?)")
        }
        return file
    }

    /// Drops the copy (its file disappears once nothing maps it).
    func discard() {
        guard fd >= 0 else { return }
        Glibc.close(fd)
        unlink(path(for: digest))
        fd = -1
        digest = 0
        size = 0
        receivedBytes = 0
    }
}

struct ComputeErrorMessage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
