#version 450
// A probe of what a dependent step costs on the device (kernel-bench --vulkan --sync; not used by models):
// `phases` phases, each streaming `chunk` uvec4 of Src (phase ph reads [ph·chunk, (ph+1)·chunk) modulo
// `span` phases) spread over every invocation of the grid, separated either by dispatches (the host runs one
// phase per dispatch, with or without a pipeline barrier between) or, in one dispatch, by grid barriers
// (an atomic arrival counter at O[0] and a spin on it: every workgroup must be resident at once, so the
// host keeps the grid small). Mode 2 also issues the next phase's first loads before waiting at the
// barrier (what a persistent kernel could do with weights, which never depend on the previous phase).
// A spin that exceeds its bound sets O[1] and every later barrier is skipped (no hang when the grid is
// not all resident); the host reports such runs as failed.
// Modes 4 and 5 chain separate dispatches recorded with NO pipeline barrier between them: phase `first`'s
// workgroups wait (one invocation spinning on an acquire load) until all of phase first − 1's have arrived
// (O[CHAIN + first − 1] == groups: each workgroup's invocations fence their writes, then one adds 1 with release
// semantics) — a dependency the shader keeps instead of the queue, so the next dispatch's workgroups launch and
// (mode 5) issue their first loads while the previous one drains. Safe only because a queue launches a
// dispatch's workgroups after every workgroup of the one before it has launched; the spin is bounded anyway.
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(std430, binding = 0) readonly buffer Src { uvec4 S[]; };
layout(std430, binding = 1) buffer Out { uint O[]; };   // [0] arrivals, [1] spin overflow, [16 + wg] results
// mode: 0 one phase (index `first`), 1 grid barriers, 2 grid barriers with the next loads issued first, 3 reset O[0], O[1]
// and the chain counters, 4 one chained phase, 5 one chained phase with its first loads issued before the wait
layout(push_constant) uniform Params { uint chunk, phases, first, mode, span; } p;

#define U 4u   // uvec4 loads per invocation in flight per round
#define CHAIN 4096u   // O[CHAIN + phase]: arrivals of a chained phase (up to 256 phases)

uint groups() { return gl_NumWorkGroups.x; }

// XOR of S[base + i] for i = start, start + stride, … < chunk, U loads in flight per round.
uvec4 streamChunk(uint base, uint start, uint stride, uvec4 acc) {
    for (uint i = start; i < p.chunk; i += U * stride) {
        uvec4 v[U];
        [[unroll]] for (uint u = 0u; u < U; u++) v[u] = i + u * stride < p.chunk ? S[base + i + u * stride] : uvec4(0u);
        [[unroll]] for (uint u = 0u; u < U; u++) acc ^= v[u];
    }
    return acc;
}

void gridBarrier(uint target) {
    barrier();
    if (gl_LocalInvocationIndex == 0u) {
        atomicAdd(O[0], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelease);
        uint spins = 0u;
        while (atomicLoad(O[0], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire) < target) {
            if (++spins > (1u << 20) || atomicLoad(O[1], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed) != 0u) {
                atomicStore(O[1], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed);
                break;
            }
        }
    }
    barrier();
}

void main() {
    const uint tid = gl_WorkGroupID.x * WG + gl_LocalInvocationIndex, stride = groups() * WG;
    if (p.mode == 3u) {
        if (tid == 0u) { O[0] = 0u; O[1] = 0u; }
        if (tid < 256u) O[CHAIN + tid] = 0u;
        return;
    }
    if (p.mode >= 4u) {
        const uint base = (p.first % p.span) * p.chunk;
        uvec4 acc = uvec4(0u), pre[U];
        const bool early = p.mode == 5u && p.chunk >= U * stride;
        if (early) { [[unroll]] for (uint u = 0u; u < U; u++) pre[u] = S[base + tid + u * stride]; }
        if (p.first > 0u) {
            if (gl_LocalInvocationIndex == 0u) {
                uint spins = 0u;
                while (atomicLoad(O[CHAIN + p.first - 1u], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire) < groups()) {
                    if (++spins > (1u << 20) || atomicLoad(O[1], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed) != 0u) {
                        atomicStore(O[1], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed);
                        break;
                    }
                }
            }
            barrier();
        }
        if (early) { [[unroll]] for (uint u = 0u; u < U; u++) acc ^= pre[u]; }
        acc = streamChunk(base, early ? tid + U * stride : tid, stride, acc);
        const uint r = acc.x ^ acc.y ^ acc.z ^ acc.w;
        if (r == 0x9e3779b9u) O[16u + gl_WorkGroupID.x] = r;
        memoryBarrier();
        barrier();
        if (gl_LocalInvocationIndex == 0u) atomicAdd(O[CHAIN + p.first], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelease);
        return;
    }
    uvec4 acc = uvec4(0u);
    uvec4 pre[U];
    bool havePre = false;
    const uint count = p.mode == 0u ? 1u : p.phases;
    for (uint ph = 0u; ph < count; ph++) {
        const uint base = ((p.first + ph) % p.span) * p.chunk;
        if (havePre) { [[unroll]] for (uint u = 0u; u < U; u++) acc ^= pre[u]; }
        acc = streamChunk(base, havePre ? tid + U * stride : tid, stride, acc);
        if (p.mode != 0u && ph + 1u < count) {
            havePre = p.mode == 2u && p.chunk >= U * stride;
            if (havePre) {
                const uint nb = ((p.first + ph + 1u) % p.span) * p.chunk;
                [[unroll]] for (uint u = 0u; u < U; u++) pre[u] = S[nb + tid + u * stride];
            }
            gridBarrier((ph + 1u) * groups());
        }
    }
    const uint r = acc.x ^ acc.y ^ acc.z ^ acc.w;
    if (r == 0x9e3779b9u) O[16u + gl_WorkGroupID.x] = r;   // keeps the loads (almost never true)
}
