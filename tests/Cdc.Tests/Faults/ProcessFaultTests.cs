using System.Diagnostics;
using System.Text;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Faults;

/// <summary>The worker process killed, doubled, or fed one enormous transaction.</summary>
public class ProcessFaultTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Killed_hard_three_times_under_sustained_load_nothing_is_lost_and_first_deliveries_keep_order()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);

        // The slot exists once the first worker streams; rows committed before that are not relayed (no snapshot).
        var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);

        var written = new List<TestEvent>();
        using var stopWriting = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var t = 0;
            while (!stopWriting.IsCancellationRequested)
            {
                var batch = Enumerable.Range(0, 5).Select(i => new TestEvent("order", $"o-{i}", $"T{t}")).ToArray();
                await outbox.CommitAsync(batch);
                lock (written)
                    written.AddRange(batch);
                t++;
                await Task.Delay(10);
            }
        });

        for (var kill = 0; kill < 3; kill++)
        {
            await Task.Delay(700 + 300 * kill);
            worker.KillHard();
            worker.Dispose();
            worker = WorkerProcess.Start(environment, output);
            await worker.WaitForOutputAsync("Streaming slot", Timeout);
        }
        worker.Dispose();
        await stopWriting.CancelAsync();
        await writer;
        var lastCommit = await outbox.CurrentWalLsnAsync();

        using var last = WorkerProcess.Start(environment, output);
        await outbox.WaitForConfirmedAsync(lastCommit, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        output.WriteLine($"3 SIGKILLs: {written.Count} written, {records.Count} records, {duplicates} duplicates");
    }

    [Fact]
    public async Task A_second_replica_waits_on_the_slot_and_takes_over_within_seconds_when_the_first_is_killed()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);

        using var first = WorkerProcess.Start(environment, output);
        await first.WaitForOutputAsync("Streaming slot", Timeout);
        using var second = WorkerProcess.Start(environment, output);
        await second.WaitForOutputAsync("is in use by another reader", Timeout);

        var written = new List<TestEvent>();
        var batch = Enumerable.Range(0, 20).Select(i => new TestEvent("order", $"o-{i % 3}", "BeforeKill")).ToArray();
        written.AddRange(batch);
        await outbox.CommitAsync(batch);

        first.KillHard();
        var killed = Stopwatch.StartNew();
        await second.WaitForOutputAsync("Streaming slot", Timeout);
        var takeover = killed.Elapsed;

        batch = Enumerable.Range(0, 20).Select(i => new TestEvent("order", $"o-{i % 3}", "AfterKill")).ToArray();
        written.AddRange(batch);
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(batch), Timeout);

        Assert.True(takeover < TimeSpan.FromSeconds(10), $"took over after {takeover}");
        Assert.Single(second.Output.Split('\n'), l => l.Contains("is in use by another reader")); // logged once, not per poll
        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        output.WriteLine($"standby took over {takeover.TotalSeconds:F1} s after the kill; {duplicates} duplicates");
    }

    [Theory]
    [InlineData("AtLeastOnce")]
    [InlineData("ExactlyOnce")] // one Kafka transaction, not split, within the bounds and transaction.timeout.ms
    public async Task One_transaction_of_200000_rows_is_relayed_with_memory_bounded(string delivery)
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Relay__MaxInFlightEvents"] = "10000";
        environment["Cdc__Kafka__Delivery"] = delivery;
        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Streaming slot", Timeout);
        var baseline = worker.PeakRssBytes();

        const int rows = 200_000;
        await outbox.ExecuteAsync($"""
            INSERT INTO {outbox.Options.Postgres.Table} (id, aggregate_type, aggregate_id, event_type, payload, headers)
            SELECT gen_random_uuid(), 'order', 'o-' || (i % 1000), 'Bulk', jsonb_build_object('i', i, 'pad', repeat('p', 150)), NULL
            FROM generate_series(1, {rows}) AS i
            """);
        var commit = await outbox.CurrentWalLsnAsync();

        var maxInFlight = 0.0;
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl) };
        var deadline = DateTime.UtcNow + Timeout;
        while (await outbox.ConfirmedFlushLsnAsync() < commit)
        {
            Assert.True(DateTime.UtcNow < deadline, "the transaction was not confirmed in time");
            var metrics = await http.GetStringAsync("/metrics");
            var line = metrics.Split('\n').First(l => l.StartsWith("cdc_events_in_flight{", StringComparison.Ordinal));
            maxInFlight = Math.Max(maxInFlight, double.Parse(line.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture));
            await Task.Delay(200);
        }
        var peak = worker.PeakRssBytes();

        // Every row reached Kafka: the topic's high watermarks add up to the row count (no restart, so no duplicates).
        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig { BootstrapServers = outbox.BootstrapServers, GroupId = "count" }).Build();
        var total = Enumerable.Range(0, 3).Sum(p => consumer.QueryWatermarkOffsets(new TopicPartition(outbox.Topic("order"), p), TimeSpan.FromSeconds(10)).High.Value);
        if (delivery == "ExactlyOnce")
        {
            // A commit marker takes an offset in each partition the transaction wrote to.
            Assert.InRange(total, rows, rows + 3);
            // One Kafka transaction for the source transaction (the scrape may lag the commit a little).
            async Task<double> Transactions() => double.Parse((await http.GetStringAsync("/metrics")).Split('\n')
                .First(l => l.StartsWith("cdc_kafka_transactions_total", StringComparison.Ordinal)).Split(' ')[^1],
                System.Globalization.CultureInfo.InvariantCulture);
            var until = DateTime.UtcNow.AddSeconds(10);
            while (await Transactions() < 1 && DateTime.UtcNow < until)
                await Task.Delay(200);
            Assert.Equal(1.0, await Transactions());
        }
        else
            Assert.Equal(rows, total);

        Assert.True(maxInFlight <= 10_000, $"in flight reached {maxInFlight}, above the configured bound");
        Assert.True(peak < 400L * 1024 * 1024, $"peak RSS {peak / 1048576} MB");
        output.WriteLine($"{delivery}: 200,000 rows in one transaction: peak RSS {peak / 1048576} MB (idle {baseline / 1048576} MB), max in flight seen {maxInFlight}");
    }
}
