using Cdc.Outbox;

namespace Cdc.Tests.Unit;

public class OutboxIdTests
{
    [Fact]
    public void Ids_are_version_7_and_sort_in_the_order_they_were_made_even_within_a_millisecond()
    {
        var ids = Enumerable.Range(0, 50_000).Select(_ => OutboxId.New()).ToList();
        Assert.All(ids, id => Assert.Equal(7, id.Version));
        Assert.All(ids, id => Assert.Equal(0b10, id.Variant >> 2));
        // PostgreSQL compares uuids byte by byte, as their text reads.
        var asPostgres = ids.Select(id => id.ToString("N")).ToList();
        Assert.Equal(asPostgres.Order(StringComparer.Ordinal), asPostgres);
        Assert.Equal(ids.Count, ids.Distinct().Count());
        var first = DateTimeOffset.FromUnixTimeMilliseconds(Convert.ToInt64(ids[0].ToString("N")[..12], 16));
        Assert.InRange(first, DateTimeOffset.UtcNow.AddSeconds(-10), DateTimeOffset.UtcNow.AddSeconds(10));
    }
}
