import Testing

@Test func quanttestsBuilds() { #expect(Bool(true)) }
