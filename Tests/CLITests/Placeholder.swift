import Testing

@Test func clitestsBuilds() { #expect(Bool(true)) }
