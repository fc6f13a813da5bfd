import Testing

@Test func modeltestsBuilds() { #expect(Bool(true)) }
