import Synchronization
#if canImport(Glibc)
import Glibc
#endif

@_silgen_name("sched_getaffinity")
private func shard_sched_getaffinity(_ pid: pid_t, _ size: Int, _ mask: UnsafeMutablePointer<UInt8>) -> Int32
@_silgen_name("pthread_setaffinity_np")
private func shard_pthread_setaffinity_np(_ thread: pthread_t, _ size: Int, _ mask: UnsafePointer<UInt8>) -> Int32

/// A persistent pool of worker threads for the CPU backend's parallel loops.
///
/// A decode step runs a few hundred short parallel loops (tens of microseconds each), so waking
/// threads through the OS each time costs as much as the work. Workers here spin briefly on a job
/// counter after each job and only then sleep on a condition variable; the calling thread takes part
/// in every job. Chunks are handed out through an atomic counter, so uneven chunks balance themselves.
public final class ThreadPool: @unchecked Sendable {
    public let threadCount: Int

    private let generation = Atomic<Int>(0)
    private let nextChunk = Atomic<Int>(0)
    private let busyWorkers = Atomic<Int>(0)
    private let shuttingDown = Atomic<Bool>(false)
    /// Bumped by `prepare()`: wakes sleeping workers without a job.
    private let wakeups = Atomic<Int>(0)
    /// Workers keep spinning (instead of sleeping) until this monotonic time in nanoseconds.
    private let spinUntil = Atomic<Int>(0)
    private let idleSpinNanoseconds = Atomic<Int>(0)
    /// Set by `park()`, cleared by `prepare()` and by a job: workers waiting for a job sleep at once.
    private let parked = Atomic<Bool>(false)
    private var chunkCount = 0
    private var body: ((Int) -> Void)?
    // Heap-allocated: pthread objects must not move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var sleepers = 0
    private var workers: [pthread_t] = []

    /// Spin iterations before a worker sleeps (a few tens of microseconds).
    private static let spinLimit = 20_000

    /// How long workers keep spinning after a job before they sleep (default: the few tens of
    /// microseconds of `spinLimit`). A shard process whose next step comes within milliseconds, on a
    /// host with cores to spare, sets it to stay awake between steps: waking sleeping threads (and their
    /// idle cores) at every step costs more there than the spinning does.
    public var idleSpin: Duration {
        get { .nanoseconds(idleSpinNanoseconds.load(ordering: .relaxed)) }
        set {
            let c = newValue.components
            idleSpinNanoseconds.store(max(0, Int(c.seconds) * 1_000_000_000 + Int(c.attoseconds / 1_000_000_000)), ordering: .relaxed)
        }
    }

    /// A job is coming soon (e.g. a step's frame has arrived): wakes sleeping workers now, so that they
    /// are spinning, not waking up, when it is posted. They spin at least a millisecond, or `idleSpin`.
    public func prepare() {
        guard threadCount > 1 else { return }
        parked.store(false, ordering: .relaxed)
        spinUntil.store(Self.monotonicNanoseconds() + max(1_000_000, idleSpinNanoseconds.load(ordering: .relaxed)), ordering: .relaxed)
        pthread_mutex_lock(mutex)
        if sleepers > 0 {
            wakeups.add(1, ordering: .releasing)
            pthread_cond_broadcast(condition)
        }
        pthread_mutex_unlock(mutex)
    }

    /// No job is coming soon (e.g. a shard process has sent its step's output and waits for the next
    /// frame): workers sleep now instead of spinning `spinLimit` iterations first, so that on an
    /// oversubscribed host they leave the cores to the processes that compute meanwhile. The next
    /// `prepare()` or job wakes them.
    public func park() {
        guard threadCount > 1 else { return }
        spinUntil.store(0, ordering: .relaxed)
        parked.store(true, ordering: .relaxed)
    }

    @inline(__always) static func monotonicNanoseconds() -> Int {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return t.tv_sec * 1_000_000_000 + t.tv_nsec
    }

    public init(threads: Int) {
        threadCount = max(1, threads)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for _ in 1..<threadCount {
            let box = Unmanaged.passRetained(self).toOpaque()
            var tid = pthread_t()
            pthread_create(&tid, nil, { arg in
                let pool = Unmanaged<ThreadPool>.fromOpaque(arg!).takeUnretainedValue()
                pool.workerLoop()
                Unmanaged<ThreadPool>.fromOpaque(arg!).release()
                return nil
            }, box)
            workers.append(tid)
        }
        // Off by default: on the 2-core VM it cut a 2-process decode's context switches from ~8500 to ~3300
        // and CPU migrations from ~230 to ~25, but its tok/s gain was inside the VM's noise (BENCHMARKS.md).
        if getenv("SHARD_PIN_THREADS").map({ String(cString: $0) }) == "1" { pinThreads() }
    }

    /// The cores the calling thread may run on (its affinity mask), or [] if it cannot be read.
    public static func callingThreadCores() -> [Int] {
        // A cpu_set_t: 1024 bits (glibc's __USE_GNU declarations do not reach Swift).
        var allowed = [UInt8](repeating: 0, count: 128)
        guard shard_sched_getaffinity(0, allowed.count, &allowed) == 0 else { return [] }
        return (0..<(allowed.count * 8)).filter { allowed[$0 / 8] & (1 << ($0 % 8)) != 0 }
    }

    /// Pins the calling thread to the first core this process may use and worker k to the (k+1)-th
    /// (modulo their count), so that the pool's threads never share a core while another is idle.
    public func pinThreads() {
        let cores = Self.callingThreadCores()
        guard !cores.isEmpty else { return }
        func pin(_ thread: pthread_t, _ core: Int) {
            var set = [UInt8](repeating: 0, count: 128)
            set[core / 8] |= UInt8(1 << (core % 8))
            _ = shard_pthread_setaffinity_np(thread, set.count, &set)
        }
        pin(pthread_self(), cores[0])
        for (k, tid) in workers.enumerated() { pin(tid, cores[(k + 1) % cores.count]) }
    }

    deinit {
        pthread_mutex_destroy(mutex)
        pthread_cond_destroy(condition)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Stops the workers (call once nothing uses the pool any more).
    public func shutdown() {
        guard !shuttingDown.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pthread_mutex_lock(mutex)
        generation.add(1, ordering: .releasing)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for t in workers { pthread_join(t, nil) }
    }

    /// Calls `body(i)` for every i in 0..<chunks, spread over the pool; returns when all are done.
    public func run(chunks: Int, _ body: (Int) -> Void) {
        guard chunks > 0 else { return }
        // After `shutdown` (e.g. a LocalModel gone while a generator it made is still in use) the workers
        // are gone: the caller does the work itself rather than waiting for them forever.
        if threadCount == 1 || chunks == 1 || shuttingDown.load(ordering: .acquiring) {
            for i in 0..<chunks { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            self.body = escapable
            chunkCount = chunks
            nextChunk.store(0, ordering: .relaxed)
            busyWorkers.store(threadCount - 1, ordering: .relaxed)
            if parked.load(ordering: .relaxed) { parked.store(false, ordering: .relaxed) }
            pthread_mutex_lock(mutex)
            generation.add(1, ordering: .releasing)
            if sleepers > 0 { pthread_cond_broadcast(condition) }
            pthread_mutex_unlock(mutex)
            drain(escapable)
            // Wait for the workers; yield now and then so that, on an oversubscribed machine, a
            // worker that has not been scheduled yet gets the core.
            var spins = 0
            while busyWorkers.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins % 256 == 0 { sched_yield() } else { spinPause() }
            }
            self.body = nil
        }
    }

    private func drain(_ body: (Int) -> Void) {
        while true {
            let i = nextChunk.add(1, ordering: .relaxed).oldValue
            if i >= chunkCount { return }
            body(i)
        }
    }

    private func workerLoop() {
        // Generation 0 is "no job yet": a worker that starts after the first job was posted must
        // still see that job, so it does not read the current generation here.
        var seen = 0
        while true {
            var spins = 0
            var current = generation.load(ordering: .acquiring)
            // Spin at least `spinLimit` iterations, and on while `idleSpin` after this job (or a
            // `prepare()`'s deadline) has not passed; the clock is read only every 256 iterations.
            var keepSpinningUntil = Self.monotonicNanoseconds() + idleSpinNanoseconds.load(ordering: .relaxed)
            while current == seen {
                spins += 1
                let parkNow = parked.load(ordering: .relaxed)
                if spins % 256 != 0 && !parkNow {
                    spinPause()
                } else if !parkNow && (spins < Self.spinLimit
                            || Self.monotonicNanoseconds() < max(keepSpinningUntil, spinUntil.load(ordering: .relaxed))) {
                    sched_yield()
                } else {
                    pthread_mutex_lock(mutex)
                    sleepers += 1
                    let wakeup = wakeups.load(ordering: .acquiring)
                    while generation.load(ordering: .acquiring) == seen && wakeups.load(ordering: .acquiring) == wakeup {
                        pthread_cond_wait(condition, mutex)
                    }
                    sleepers -= 1
                    pthread_mutex_unlock(mutex)
                    spins = 0
                    keepSpinningUntil = 0
                }
                current = generation.load(ordering: .acquiring)
            }
            seen = current
            if shuttingDown.load(ordering: .acquiring) { return }
            if let body { drain(body) }
            busyWorkers.subtract(1, ordering: .releasing)
        }
    }

    /// Cores this process may run on: the calling thread's CPU affinity mask (`taskset`, a container's
    /// cpuset: the mask every thread starts with), else the online count.
    public static var usableCores: Int {
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let allowed = callingThreadCores().count
        return allowed > 0 ? min(allowed, online) : online
    }

    /// A short busy wait between polls.
    @inline(never) private func spinPause() {}
}
