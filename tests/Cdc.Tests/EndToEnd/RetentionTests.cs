using Cdc.Tests.Fixtures;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>The optional retention job deletes old rows once relayed, and never unpublishes anything.</summary>
public class RetentionTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    [Fact]
    public async Task Rows_older_than_the_retention_are_deleted_after_they_are_relayed_and_newer_ones_stay()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: o => o.Postgres.Retention = TimeSpan.FromSeconds(2));
        await outbox.StartRelayAsync();

        var old = new TestEvent("order", "o-1", "Old");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(old), TimeSpan.FromSeconds(60));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await RowCountAsync(outbox) > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the old row was not deleted");
            await Task.Delay(200);
        }

        var recent = new TestEvent("order", "o-1", "Recent");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(recent), TimeSpan.FromSeconds(60));
        Assert.Equal(1, await RowCountAsync(outbox)); // younger than the retention: kept

        Assert.Equal([old.Id.ToString(), recent.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
    }

    static async Task<long> RowCountAsync(OutboxHarness outbox)
    {
        await using var connection = new NpgsqlConnection(outbox.ConnectionString);
        await connection.OpenAsync();
        await using var count = new NpgsqlCommand($"SELECT count(*) FROM {outbox.Options.Postgres.Table}", connection);
        return (long)(await count.ExecuteScalarAsync())!;
    }
}
