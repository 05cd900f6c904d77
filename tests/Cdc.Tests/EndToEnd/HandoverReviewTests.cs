using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Cdc.Embedded;
using Cdc.Tests.Fixtures;
using static Cdc.Tests.Fixtures.WorkerLoad;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// Review of the HA guarantees (issue 12): readiness of standbys, handovers in both directions, a second replica while
/// the first relays its initial snapshot, SIGTERM to a standby, two replicas started at once.
/// </summary>
public class HandoverReviewTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    /// <summary>Polls /readyz until it answers <paramref name="expected"/> or the time is up; returns the last answer.</summary>
    static async Task<HttpStatusCode> ReadyzEventuallyAsync(WorkerProcess worker, HttpStatusCode expected, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        HttpStatusCode last;
        while ((last = await worker.ReadyzAsync()) != expected && DateTime.UtcNow < deadline)
            await Task.Delay(250);
        return last;
    }

    /// <summary>
    /// A healthy standby is Ready (the contract), not only for the first instant after it starts standing by: with
    /// PostgreSQL and Kafka fine throughout, every /readyz during ten seconds of standing by must answer 200.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_standby_stays_ready_while_it_waits(bool ownOneBrokerCluster)
    {
        var servers = await fixture.GetAsync();
        using var cluster = ownOneBrokerCluster ? MockKafkaCluster.Start(brokers: 1) : null;
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, cluster is null ? ["order"] : [], bootstrapServers: cluster?.BootstrapServers);
        cluster?.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster?.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        var environment = WorkerProcess.Environment(outbox.Options);
        using var leader = WorkerProcess.Start(environment, output);
        await leader.WaitForOutputAsync("Streaming slot", Timeout);
        using var standby = WorkerProcess.Start(environment, output);
        await standby.WaitForOutputAsync("waiting to take over", Timeout);
        var answers = new List<HttpStatusCode>();
        for (var i = 0; i < 20; i++)
        {
            answers.Add(await standby.ReadyzAsync());
            await Task.Delay(500);
        }
        var standbyGauge = Gauge(await standby.MetricsAsync(), "cdc_stream_standby");
        output.WriteLine($"standby /readyz over 10 s: {string.Join(" ", answers.Select(a => (int)a))}; cdc_stream_standby {standbyGauge}");
        Assert.Equal("1", standbyGauge);
        Assert.All(answers, a => Assert.Equal(HttpStatusCode.OK, a));
        await standby.TerminateAsync(TimeSpan.FromSeconds(30));
        await leader.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Kafka reachability is set back to true only by an acknowledged delivery: an idle leader that saw Kafka go away
    /// stays 503 after it is back, until some event happens to be written.
    /// </summary>
    [Fact]
    public async Task After_Kafka_comes_back_an_idle_leader_is_ready_again()
    {
        var servers = await fixture.GetAsync();
        using var cluster = MockKafkaCluster.Start(brokers: 1);
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], bootstrapServers: cluster.BootstrapServers);
        cluster.CreateTopic(outbox.Topic("order"), 1, 1);
        cluster.CreateTopic(outbox.DeadLetterTopic, 1, 1);
        using var leader = WorkerProcess.Start(WorkerProcess.Environment(outbox.Options), output);
        await leader.WaitForOutputAsync("Streaming slot", Timeout);
        cluster.SetAllBrokersDown();
        await leader.WaitForOutputAsync("Kafka unreachable", TimeSpan.FromSeconds(150));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, await leader.ReadyzAsync());
        cluster.SetAllBrokersUp();
        var answer = await ReadyzEventuallyAsync(leader, HttpStatusCode.OK, TimeSpan.FromSeconds(45));
        output.WriteLine($"Kafka back for 45 s: idle leader /readyz {(int)answer}");
        Assert.Equal(HttpStatusCode.OK, answer);
    }

    /// <summary>SIGTERM to the standby: it exits 0 at once, and the leader keeps streaming, Ready, losing nothing.</summary>
    [Fact]
    public async Task SIGTERM_to_the_standby_exits_promptly_and_does_not_disturb_the_leader()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        using var leader = WorkerProcess.Start(environment, output);
        await leader.WaitForOutputAsync("Streaming slot", Timeout);
        using var standby = WorkerProcess.Start(environment, output);
        await standby.WaitForOutputAsync("waiting to take over", Timeout);
        var (writing, written, stopWriting) = SteadyWriter(outbox);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var took = await standby.TerminateAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, standby.ExitCode);
        await Task.Delay(TimeSpan.FromSeconds(1));
        await stopWriting.CancelAsync();
        await writing;
        await outbox.WaitForConfirmedAsync(await outbox.CurrentWalLsnAsync(), Timeout);
        List<TestEvent> all;
        lock (written)
            all = [.. written];
        var duplicates = DeliveryAssert.EveryEventOnce(all, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        output.WriteLine($"standby exited in {took.TotalMilliseconds:F0} ms; {all.Count} events, {duplicates} duplicates");
        Assert.True(took < TimeSpan.FromSeconds(5), $"the standby took {took.TotalMilliseconds:F0} ms to exit");
        Assert.Equal(0, duplicates);
        Assert.Single(Regex.Matches(leader.Output, "Streaming slot"));
        Assert.Equal(HttpStatusCode.OK, await leader.ReadyzAsync());
        await leader.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Two replicas started at the same moment on a slot that does not exist yet: one creates it and leads, the other
    /// stands by; a steady writer's events arrive once.
    /// </summary>
    [Fact]
    public async Task Two_replicas_started_at_once_on_a_missing_slot_give_one_leader_and_no_duplicates()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        using var a = WorkerProcess.Start(environment, output);
        using var b = WorkerProcess.Start(environment, output);
        var deadline = DateTime.UtcNow + Timeout;
        while (!(a.Output.Contains("Streaming slot") && b.Output.Contains("waiting to take over")) &&
               !(b.Output.Contains("Streaming slot") && a.Output.Contains("waiting to take over")) && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        var (writing, written, stopWriting) = SteadyWriter(outbox);
        await Task.Delay(TimeSpan.FromSeconds(3));
        await stopWriting.CancelAsync();
        await writing;
        await outbox.WaitForConfirmedAsync(await outbox.CurrentWalLsnAsync(), Timeout);
        var ups = new[] { Gauge(await a.MetricsAsync(), "cdc_stream_up"), Gauge(await b.MetricsAsync(), "cdc_stream_up") };
        List<TestEvent> all;
        lock (written)
            all = [.. written];
        var duplicates = DeliveryAssert.EveryEventOnce(all, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        output.WriteLine($"cdc_stream_up {ups[0]} / {ups[1]}; {all.Count} events, {duplicates} duplicates");
        Assert.Equal(["0", "1"], ups.Order());
        Assert.Equal(0, duplicates);
        await a.TerminateAsync(TimeSpan.FromSeconds(30));
        await b.TerminateAsync(TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Exactly once: the second replica that starts while the first relays its initial snapshot does not wait until it
    /// holds the slot (a table read skips that wait), so it registers the same transactional id and fences the leader,
    /// whose Kafka transaction then fails. A standby must never fence the leader.
    /// </summary>
    [Fact]
    public async Task Exactly_once_a_second_replica_started_during_the_initial_snapshot_does_not_fence_the_leader()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        for (var batch = 0; batch < 6; batch++)
            await outbox.CommitAsync(Enumerable.Range(0, 500).Select(i => new TestEvent("order", $"o-{i % 7}", $"Row{batch * 500 + i}")).ToArray());
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__Snapshot"] = "Initial";
        environment["Cdc__Kafka__Delivery"] = "ExactlyOnce";
        var slow = new Dictionary<string, string?>(environment)
        {
            ["Cdc__Relay__MaxInFlightEvents"] = "10",
            ["Cdc__Relay__TransactionMaxEvents"] = "10",
            ["Cdc__Kafka__Producer__linger.ms"] = "50",
        };
        using var first = WorkerProcess.Start(slow, output);
        await first.WaitForOutputAsync("Relaying the snapshot", Timeout);
        var before = first.Output.Length;
        using var second = WorkerProcess.Start(environment, output);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!second.Output.Contains("waiting to take over") && !second.Output.Contains("Exactly-once delivery as") && DateTime.UtcNow < deadline)
            await Task.Delay(50);
        await Task.Delay(TimeSpan.FromSeconds(5));
        var firstAfter = first.Output[before..];
        output.WriteLine($"second registered its transactional id: {second.Output.Contains("Exactly-once delivery as")}; " +
                         $"first interrupted: {firstAfter.Contains("Stream interrupted")}");
        await second.TerminateAsync(TimeSpan.FromSeconds(30));
        await first.TerminateAsync(TimeSpan.FromSeconds(30));
        Assert.DoesNotContain("Exactly-once delivery as", second.Output);
        Assert.DoesNotContain("Stream interrupted", firstAfter);
    }

    /// <summary>
    /// With <c>Snapshot=Initial</c>, the first replica creates the slot and relays the table before it starts
    /// replication, so the slot is not active meanwhile and the checkpoint says the snapshot is pending. A second
    /// replica started then finds the slot "free" and the snapshot "interrupted", relays the whole table a second time,
    /// and reports itself as streaming (cdc_stream_up 1) on a slot another replica is working for: two leaders and
    /// duplicates without any failure. It should stand by until the first replica holds or releases the slot.
    /// </summary>
    [Fact]
    public async Task A_second_replica_started_while_the_first_relays_its_initial_snapshot_stands_by_instead_of_relaying_the_table_again()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var rows = new List<TestEvent>();
        for (var batch = 0; batch < 6; batch++)
        {
            var events = Enumerable.Range(0, 500).Select(i => new TestEvent("order", $"o-{i % 7}", $"Row{batch * 500 + i}")).ToArray();
            await outbox.CommitAsync(events);
            rows.AddRange(events);
        }
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__Snapshot"] = "Initial";
        // The first replica's snapshot takes a while (a few in flight, a long linger): the window of a rolling update or
        // of a second pod that starts a little later than the first.
        var slow = new Dictionary<string, string?>(environment)
        {
            ["Cdc__Relay__MaxInFlightEvents"] = "10",
            ["Cdc__Kafka__Producer__linger.ms"] = "50",
        };
        using var first = WorkerProcess.Start(slow, output);
        await first.WaitForOutputAsync("Relaying the snapshot", Timeout);
        using var second = WorkerProcess.Start(environment, output);
        var deadline = DateTime.UtcNow + Timeout;
        while (!second.Output.Contains("waiting to take over") && !second.Output.Contains("Relaying the snapshot") && DateTime.UtcNow < deadline)
        {
            Assert.False(second.HasExited, $"the second replica exited:\n{second.Output}");
            await Task.Delay(50);
        }
        var secondUp = Gauge(await second.MetricsAsync(), "cdc_stream_up");
        var firstUp = Gauge(await first.MetricsAsync(), "cdc_stream_up");
        output.WriteLine($"while the first relays its snapshot: cdc_stream_up first {firstUp}, second {secondUp}");

        // The first replica finishes its snapshot and then either streams or (having lost the slot to the second) stands by.
        deadline = DateTime.UtcNow + Timeout;
        while (!first.Output.Contains("Every row of the snapshot is acknowledged") && !first.Output.Contains("waiting to take over") && DateTime.UtcNow < deadline)
            await Task.Delay(100);
        await Task.Delay(TimeSpan.FromSeconds(3));
        var firstLostTheSlot = first.Output.Contains("waiting to take over");
        await second.TerminateAsync(TimeSpan.FromSeconds(30));
        await first.TerminateAsync(TimeSpan.FromSeconds(30));
        var records = outbox.ReadTopic(outbox.Topic("order"));
        var duplicates = DeliveryAssert.EveryEventOnce(rows, DeliveryAssert.Ids(records));
        output.WriteLine($"{rows.Count} rows in the table, {records.Count} records, {duplicates} duplicates; " +
                         $"the first replica {(firstLostTheSlot ? "lost the slot to the second after its snapshot" : "kept the slot")}");

        Assert.DoesNotContain("Relaying the snapshot", second.Output);
        Assert.Equal("0", secondUp);
        Assert.Equal(0, duplicates);
    }
}
