// Rounding to the 8-bit activation grids (quantize_act.comp's arithmetic) by one subgroup per block,
// for shaders that produce a value and round it in the same pass. The includer defines
// float qval(uint i) (the value of element i; it must return the same bits on every call) and
// writes through qstore(i, v).
float div_rn(float a, float b) {
    const float q = a * (1.0 / b);
    const float r = fma(-q, b, a);
    return fma(r, 1.0 / b, q);
}

// Elements [base, base + B) (B = 32 for mode 0, 256 for mode 1); the whole subgroup calls it.
void quantize_block(uint base, uint mode) {
    const uint lane = gl_SubgroupInvocationID, SG = gl_SubgroupSize;
    const uint B = mode == 0u ? 32u : 256u;
    float amax = 0.0, first = 1e9;
    for (uint j = lane; j < B; j += SG) amax = max(amax, abs(qval(base + j)));
    amax = subgroupMax(amax);
    if (mode == 0u) {
        const float d = round_f16(div_rn(amax, 127.0));
        const float id = amax != 0.0 ? div_rn(127.0, amax) : 0.0;
        for (uint j = lane; j < B; j += SG) qstore(base + j, d * roundEven(qval(base + j) * id));
        return;
    }
    if (amax == 0.0) {
        for (uint j = lane; j < B; j += SG) qstore(base + j, 0.0);
        return;
    }
    // max: the first value of largest |x|, taken from the lane that holds it (no lane re-reads another
    // lane's element, which may already be overwritten when the output aliases the input).
    float mine = 0.0;
    for (uint j = lane; j < B; j += SG) {
        const float v = qval(base + j);
        if (abs(v) == amax && float(j) < first) { first = float(j); mine = v; }
    }
    const float firstAll = subgroupMin(first);
    const float mx = subgroupAdd(first == firstAll ? mine : 0.0);
    const float iscale = div_rn(-127.0, mx);
    const float d = div_rn(1.0, iscale);
    for (uint j = lane; j < B; j += SG) qstore(base + j, d * min(127.0, roundEven(iscale * qval(base + j))));
}
