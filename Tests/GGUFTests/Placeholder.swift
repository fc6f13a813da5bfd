import Testing

@Test func gguftestsBuilds() { #expect(Bool(true)) }
