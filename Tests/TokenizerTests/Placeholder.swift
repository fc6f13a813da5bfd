import Testing

@Test func tokenizertestsBuilds() { #expect(Bool(true)) }
