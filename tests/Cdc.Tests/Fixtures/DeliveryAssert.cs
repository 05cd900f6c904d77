namespace Cdc.Tests.Fixtures;

/// <summary>At-least-once: every written event id was delivered, nothing else was, duplicates are allowed and counted.</summary>
public static class DeliveryAssert
{
    /// <returns>The number of duplicate deliveries.</returns>
    public static int EveryEventOnce(IEnumerable<TestEvent> written, IReadOnlyCollection<string> deliveredIds)
    {
        var expected = written.Select(e => e.Id.ToString()).ToHashSet();
        var delivered = deliveredIds.ToHashSet();
        var missing = expected.Except(delivered).ToList();
        var unexpected = delivered.Except(expected).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new Xunit.Sdk.XunitException(
                $"{expected.Count} written, {deliveredIds.Count} delivered; missing {missing.Count}: [{string.Join(", ", missing.Take(10))}]; " +
                $"unexpected {unexpected.Count}: [{string.Join(", ", unexpected.Take(10))}]");
        return deliveredIds.Count - delivered.Count;
    }
}
