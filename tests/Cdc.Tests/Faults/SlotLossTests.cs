using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>
/// The slot taken away from under the connector. The contract's Lost slots section: a slot that disappears after the
/// connector confirmed a position in it is lost, not a first start; with the default policy the worker stops with a
/// message. (Issue 10 builds the checkpoint this needs; these tests show what happens today.)
/// </summary>
public class SlotLossTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task A_slot_dropped_while_events_are_unacknowledged_is_never_silently_replaced_by_a_fresh_one()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers,
            configure: o => o.Relay.ShutdownTimeout = TimeSpan.FromSeconds(2));
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        await outbox.StartRelayAsync();
        var before = new TestEvent("order", "o-1", "Before");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(before), Timeout);

        cluster.SetAllBrokersDown();
        var unacknowledged = Enumerable.Range(0, 5).Select(i => new TestEvent("order", "o-1", $"Down{i}")).ToArray();
        await outbox.CommitAsync(unacknowledged);
        await outbox.StopRelayAsync();
        // A DBA drops the slot (or a failover lands on a server without it).
        await outbox.ExecuteAsync($"SELECT pg_drop_replication_slot('{outbox.Options.Postgres.Slot}')");
        cluster.SetAllBrokersUp();

        outbox.StartRelay();
        var after = new TestEvent("order", "o-1", "After");
        var deadline = DateTime.UtcNow + Timeout;
        Exception? stopped = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                outbox.AssertRelayRunning();
            }
            catch (Xunit.Sdk.XunitException e)
            {
                stopped = e;
                break;
            }
            if (outbox.Status.Streaming)
            {
                await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(after), Timeout);
                break;
            }
            await Task.Delay(100);
        }
        if (stopped is not null)
        {
            output.WriteLine($"stopped: {stopped.Message}");
            return; // the contract's LostSlotPolicy=Stop
        }
        // It went on: then nothing may be missing.
        DeliveryAssert.EveryEventOnce(unacknowledged.Prepend(before).Append(after), DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
    }
}
