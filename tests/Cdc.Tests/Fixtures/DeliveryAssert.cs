using System.Text;
using Cdc.Contracts;
using Confluent.Kafka;

namespace Cdc.Tests.Fixtures;

/// <summary>What the tests check of delivered records: at least once, nothing unexpected, per-aggregate order.</summary>
public static class DeliveryAssert
{
    public static string Header(ConsumeResult<byte[], byte[]> record, string name) =>
        Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes(name));

    public static List<string> Ids(IEnumerable<ConsumeResult<byte[], byte[]>> records) => records.Select(r => Header(r, HeaderNames.Id)).ToList();

    /// <summary>Every written event id was delivered and nothing else was; duplicates are allowed.</summary>
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

    /// <summary>Per aggregate, the first delivery of each event is in the order the events were written (commit order).</summary>
    public static void FirstDeliveriesInWrittenOrder(IEnumerable<TestEvent> written, IEnumerable<ConsumeResult<byte[], byte[]>> records)
    {
        var ordered = records.OrderBy(r => r.Offset.Value).Select(r => Header(r, HeaderNames.Id)).ToList();
        foreach (var aggregate in written.GroupBy(e => (e.AggregateType, e.AggregateId)))
        {
            var expected = aggregate.Select(e => e.Id.ToString()).ToList();
            var firsts = ordered.Where(expected.Contains).Distinct().ToList();
            Assert.Equal(expected, firsts);
        }
    }

    /// <summary>
    /// Per aggregate, the last delivery of each event is in written order: a consumer that applies every delivery ends
    /// with the events in commit order (a weaker check than <see cref="FirstDeliveriesInWrittenOrder"/>, for what a test
    /// broker cannot show).
    /// </summary>
    public static void LastDeliveriesInWrittenOrder(IEnumerable<TestEvent> written, IEnumerable<ConsumeResult<byte[], byte[]>> records)
    {
        var ordered = records.OrderBy(r => r.Offset.Value).Select(r => Header(r, HeaderNames.Id)).ToList();
        foreach (var aggregate in written.GroupBy(e => (e.AggregateType, e.AggregateId)))
        {
            var expected = aggregate.Select(e => e.Id.ToString()).ToList();
            var lasts = ordered.Where(expected.Contains).Reverse().Distinct().Reverse().ToList();
            Assert.Equal(expected, lasts);
        }
    }
}
