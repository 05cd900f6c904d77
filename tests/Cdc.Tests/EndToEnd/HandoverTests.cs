using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Cdc.Tests.Fixtures;
using static Cdc.Tests.Fixtures.WorkerLoad;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// Two worker processes on one slot, as two replicas of the Helm chart: the server allows one reader per slot, so one
/// streams and the other stands by (both Ready), and the standby takes over when the first goes away — at once after a
/// graceful stop (the leader confirms, then releases), and as soon as the server sees a dead leader's connection go.
/// </summary>
public class HandoverTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Both_replicas_are_ready_and_a_graceful_stop_hands_the_slot_over_within_two_seconds_without_duplicates()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        using var leader = WorkerProcess.Start(environment, output);
        await leader.WaitForOutputAsync("Streaming slot", Timeout);
        using var standby = WorkerProcess.Start(environment, output);
        await standby.WaitForOutputAsync("waiting to take over", Timeout);

        using var leaderHttp = new HttpClient { BaseAddress = new Uri(leader.ListeningUrl) };
        using var standbyHttp = new HttpClient { BaseAddress = new Uri(standby.ListeningUrl) };
        Assert.Equal(HttpStatusCode.OK, (await leaderHttp.GetAsync("/readyz")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await standbyHttp.GetAsync("/readyz")).StatusCode);
        var standbyMetrics = await standbyHttp.GetStringAsync("/metrics");
        Assert.Equal("1", Gauge(await leaderHttp.GetStringAsync("/metrics"), "cdc_stream_up"));
        Assert.Equal("0", Gauge(standbyMetrics, "cdc_stream_up"));
        Assert.Equal("1", Gauge(standbyMetrics, "cdc_stream_standby"));

        var (writing, written, stopWriting) = SteadyWriter(outbox);
        await Task.Delay(TimeSpan.FromSeconds(2));
        var sigterm = Stopwatch.StartNew();
        var exiting = leader.TerminateAsync(TimeSpan.FromSeconds(30));
        await standby.WaitForOutputAsync("Streaming slot", Timeout);
        var gap = sigterm.Elapsed;
        await exiting;
        Assert.Equal(0, leader.ExitCode);
        await Task.Delay(TimeSpan.FromSeconds(2));
        await stopWriting.CancelAsync();
        await writing;
        await outbox.WaitForConfirmedAsync(await outbox.CurrentWalLsnAsync(), Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        List<TestEvent> all;
        lock (written)
            all = [.. written];
        var duplicates = DeliveryAssert.EveryEventOnce(all, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(all, records);
        output.WriteLine($"graceful handover: {gap.TotalMilliseconds:F0} ms from SIGTERM to the standby streaming; {all.Count} events, {duplicates} duplicates");
        Assert.Equal(0, duplicates);
        Assert.True(gap < TimeSpan.FromSeconds(2), $"handover took {gap.TotalMilliseconds:F0} ms");
        Assert.Equal(HttpStatusCode.OK, (await standbyHttp.GetAsync("/readyz")).StatusCode);
        Assert.Equal("1", Gauge(await standbyHttp.GetStringAsync("/metrics"), "cdc_stream_up"));
        await standby.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_killed_leader_is_replaced_within_two_seconds_of_the_server_seeing_its_connection_go()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        using var leader = WorkerProcess.Start(environment, output);
        await leader.WaitForOutputAsync("Streaming slot", Timeout);
        using var standby = WorkerProcess.Start(environment, output);
        await standby.WaitForOutputAsync("waiting to take over", Timeout);

        var (writing, written, stopWriting) = SteadyWriter(outbox);
        await Task.Delay(TimeSpan.FromSeconds(2));
        var walsender = await Sql.ScalarAsync<int>(outbox.ConnectionString,
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1", outbox.Options.Postgres.Slot);
        leader.KillHard();
        // When the server has seen the connection go: the leader's walsender has exited and the slot is free. (Watched by
        // the walsender's pid: the standby may take the slot between two looks at pg_replication_slots.)
        var freed = Stopwatch.StartNew();
        while (await Sql.ScalarAsync<bool>(outbox.ConnectionString, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", walsender))
        {
            Assert.True(freed.Elapsed < Timeout, $"the server still shows the killed leader's walsender {walsender}");
            await Task.Delay(10);
        }
        var seen = freed.Elapsed;
        var fromFree = Stopwatch.StartNew();
        await standby.WaitForOutputAsync("Streaming slot", Timeout);
        var gap = fromFree.Elapsed;
        await Task.Delay(TimeSpan.FromSeconds(2));
        await stopWriting.CancelAsync();
        await writing;
        await outbox.WaitForConfirmedAsync(await outbox.CurrentWalLsnAsync(), Timeout);

        List<TestEvent> all;
        lock (written)
            all = [.. written];
        var records = outbox.ReadTopic(outbox.Topic("order"));
        var duplicates = DeliveryAssert.EveryEventOnce(all, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(all, records);
        output.WriteLine($"after kill -9: the server freed the slot {seen.TotalMilliseconds:F0} ms after the kill; the standby streamed " +
                         $"{gap.TotalMilliseconds:F0} ms after that; {all.Count} events, {duplicates} duplicates");
        Assert.True(gap < TimeSpan.FromSeconds(2), $"takeover took {gap.TotalMilliseconds:F0} ms after the slot was free");
        await standby.TerminateAsync(TimeSpan.FromSeconds(30));
    }
}
