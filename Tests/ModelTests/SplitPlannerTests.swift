import Coordinator
import GGUF
import Model
import Testing

/// Cutting layers by the workers' memory, and refusing plans that do not fit.
@Suite struct SplitPlannerTests {
    func planner(ctx: Int = 1024) throws -> SplitPlanner {
        let file = try GGUFFile(path: try modelPath(smolLM2))
        return SplitPlanner(memory: file.layerMemory, config: try ModelConfig(gguf: file), contextLength: ctx, maxBatchRows: 64)
    }

    @Test func equalMemoryCutsEvenly() throws {
        let p = try planner()
        let targets = [PlanTarget(name: "a", freeBytes: 8 << 30), PlanTarget(name: "b", freeBytes: 8 << 30 + 1 << 20)]
        #expect(try p.plan(shards: 2, targets: targets) == [0..<15, 15..<30])
        #expect(try p.plan(shards: 3) == [0..<10, 10..<20, 20..<30])
    }

    @Test func unequalMemoryCutsInProportion() throws {
        let p = try planner()
        let total = p.footprint(0..<30).total
        // The first worker has three times the room of the second: it takes about three quarters of the layers.
        let plan = try p.plan(shards: 2, targets: [PlanTarget(name: "big", freeBytes: total * 3 / 2),
                                                  PlanTarget(name: "small", freeBytes: total / 2)])
        #expect(plan.count == 2 && plan[0].lowerBound == 0 && plan[1].upperBound == 30 && plan[0].upperBound == plan[1].lowerBound)
        #expect(plan[0].count >= 20, "\(plan)")
        // Every shard fits its worker.
        #expect(p.footprint(plan[0]).total <= total * 3 / 2 && p.footprint(plan[1]).total <= total / 2)
        // Four workers, the last one large: never an empty shard.
        let four = try p.plan(shards: 4, targets: [1, 1, 1, 20].map { PlanTarget(name: "w", freeBytes: $0 * total) })
        #expect(four.allSatisfy { !$0.isEmpty } && four.last!.count > four[0].count, "\(four)")
    }

    @Test func aPlanThatDoesNotFitNamesTheShardAndTheBytesShort() throws {
        let p = try planner()
        let need = p.footprint(15..<30).total
        let targets = [PlanTarget(name: "worker a", freeBytes: 8 << 30), PlanTarget(name: "worker b", freeBytes: need - 1000)]
        do {
            _ = try p.plan(shards: 2, split: [15, 15], targets: targets)
            Issue.record("a plan 1000 bytes short was accepted")
        } catch {
            let message = "\(error)"
            #expect(message.contains("shard 1 (layers 15..<30)") && message.contains("worker b"), "\(message)")
            #expect(message.contains("short (1000 bytes)"), "\(message)")
        }
    }

    @Test func footprintCountsWeightsKVAndBuffers() throws {
        let p = try planner(ctx: 1024)
        let file = try GGUFFile(path: try modelPath(smolLM2))
        let c = try ModelConfig(gguf: file)
        let f = p.footprint(0..<30)
        #expect(f.weightBytes == file.layerMemory.total)  // one shard holds every tensor
        #expect(f.kvBytes == 30 * 2 * 1024 * c.kvDim * 2)
        #expect(SplitPlanner.format(3 << 29) == "1.50 GiB" && SplitPlanner.format(5 << 20) == "5.0 MiB")
    }
}
