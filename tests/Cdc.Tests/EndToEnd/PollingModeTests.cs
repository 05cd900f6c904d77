using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Cdc.Configuration;
using Cdc.Embedded;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// <c>Cdc:Postgres:Mode=Polling</c>: the table polled in batches (<c>FOR UPDATE SKIP LOCKED</c>, publish, wait for the
/// acknowledgements, delete, commit), on a real PostgreSQL and the Kafka-protocol test broker; in-process and as the
/// worker binary.
/// </summary>
public class PollingModeTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static Action<CdcOptions> Polling(int batchSize, int intervalMs = 50, Action<CdcOptions>? more = null) => o =>
    {
        o.Postgres.Mode = RelayMode.Polling;
        o.Postgres.Polling.BatchSize = batchSize;
        o.Postgres.Polling.Interval = TimeSpan.FromMilliseconds(intervalMs);
        more?.Invoke(o);
    };

    [Fact]
    public async Task Every_row_is_relayed_once_with_the_contract_record_in_per_aggregate_order_and_the_table_ends_empty()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order", "customer"], configure: Polling(batchSize: 7));

        // Transactions that commit one after another, over 6 aggregates of two types; the first three before the relay
        // starts (the table is the queue: no slot has to exist first). 7 rows per batch, so aggregates span batches.
        var written = new List<TestEvent>();
        var transactions = new List<TestEvent[]>();
        async Task CommitAsync(int t)
        {
            var events = Enumerable.Range(0, 4).Select(i =>
            {
                var type = (t + i) % 2 == 0 ? "order" : "customer";
                return new TestEvent(type, $"{type}-{(t * 4 + i) % 3}", $"Event{t}_{i}", $$"""{"t":{{t}},"i":{{i}}}""",
                    $$"""{"traceparent":"00-{{t:x32}}-{{i:x16}}-01","seq":{{t * 4 + i}}}""");
            }).ToArray();
            written.AddRange(events);
            transactions.Add(events);
            await outbox.CommitAsync(events);
        }
        for (var t = 0; t < 3; t++)
            await CommitAsync(t);
        await outbox.StartRelayAsync();
        for (var t = 3; t < 33; t++)
            await CommitAsync(t);

        await WaitForEmptyAsync(outbox.ConnectionString, outbox.Options.Postgres.Table);
        var records = outbox.ReadTopic(outbox.Topic("order")).Concat(outbox.ReadTopic(outbox.Topic("customer"))).ToList();

        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        var byId = records.ToDictionary(r => Header(r, "id"));
        foreach (var e in written)
        {
            var record = byId[e.Id.ToString()];
            Assert.Equal(outbox.Topic(e.AggregateType!), record.Topic);
            Assert.Equal(e.AggregateId, Encoding.UTF8.GetString(record.Message.Key));
            Assert.Equal(e.EventType, Header(record, "event_type"));
            var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
            Assert.Equal(e.Id.ToString(), evt.Id);
            Assert.Equal(e.AggregateType, evt.AggregateType);
            Assert.Equal(e.AggregateId, evt.AggregateId);
            Assert.Equal(e.EventType, evt.EventType);
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(e.Payload), JsonNode.Parse(evt.Payload.ToStringUtf8())));
            Assert.Equal("application/json", evt.PayloadContentType);
            Assert.True(evt.CreatedAt.ToDateTime() > DateTime.UtcNow.AddMinutes(-5));
            Assert.Equal(Origin.Polling, evt.Source.Origin);
            Assert.Equal(0UL, evt.Source.CommitLsn);
            Assert.NotEqual(0U, evt.Source.TransactionId);
            // The test server does not track commit timestamps: the row's created_at stands in.
            Assert.Equal(evt.CreatedAt, evt.Source.CommitTime);
            Assert.StartsWith(evt.Headers["traceparent"][..36], Header(record, "traceparent"));
            Assert.Equal(evt.Headers["seq"], Header(record, "seq"));
        }

        // The transaction id is the inserting transaction's: one per written transaction.
        var xids = transactions.Select(tx => tx.Select(e => OutboxEvent.Parser.ParseFrom(byId[e.Id.ToString()].Message.Value).Source.TransactionId)
            .Distinct().Single()).ToList();
        Assert.Equal(transactions.Count, xids.Distinct().Count());

        // Per aggregate (key), one partition, in commit order.
        foreach (var aggregate in written.GroupBy(e => (e.AggregateType, e.AggregateId)))
        {
            var ids = aggregate.Select(e => e.Id.ToString()).ToList();
            var delivered = records.Where(r => ids.Contains(Header(r, "id"))).ToList();
            Assert.Single(delivered.Select(r => r.Partition.Value).Distinct());
            Assert.Equal(ids, delivered.OrderBy(r => r.Offset.Value).Select(r => Header(r, "id")));
        }

        // No replication was involved: no slot, no publication.
        Assert.Equal(0L, await Sql.ScalarAsync<long>(outbox.ConnectionString,
            "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_publication WHERE pubname = $2)",
            outbox.Options.Postgres.Slot, outbox.Options.Postgres.Publication));
    }

    [Fact]
    public async Task Rows_that_cannot_be_published_are_dead_lettered_once_and_deleted_like_the_others()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], aggregateTypeNullable: true, configure: Polling(batchSize: 3));
        await outbox.StartRelayAsync();

        var nullType = new TestEvent(null, "x-1", "NoType");
        var badType = new TestEvent("has space", "x-2", "BadType");
        var badHeaders = new TestEvent("order", "x-3", "BadHeaders", "{}", """["not","an","object"]""");
        var good = new TestEvent("order", "o-1", "Good");
        await outbox.CommitAsync(nullType, badType, badHeaders, good);
        // created_at values no event can carry: one sorts before every row, one after; neither may be polled forever.
        var early = new TestEvent("order", "x-4", "MinusInfinity");
        var late = new TestEvent("order", "x-5", "Infinity");
        await outbox.ExecuteAsync($"""
            INSERT INTO {outbox.Options.Postgres.Table} (id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES
              ('{early.Id}', 'order', 'x-4', 'MinusInfinity', '{"{}"}', '-infinity'),
              ('{late.Id}', 'order', 'x-5', 'Infinity', '{"{}"}', 'infinity')
            """);
        var after = new TestEvent("order", "o-2", "After");
        await outbox.CommitAsync(after);

        await WaitForEmptyAsync(outbox.ConnectionString, outbox.Options.Postgres.Table);
        await Task.Delay(500); // several more polls: nothing may come again
        Assert.Equal([good.Id.ToString(), after.Id.ToString()], outbox.ReadTopic(outbox.Topic("order")).OrderBy(r => r.Offset.Value).Select(r => Header(r, "id")));

        var dead = outbox.ReadTopic(outbox.DeadLetterTopic);
        Assert.Equal(5, dead.Count); // each once
        var byId = dead.ToDictionary(r => Header(r, "id"));
        Assert.Contains("aggregate_type is NULL", Header(byId[nullType.Id.ToString()], "error"));
        Assert.Contains("valid Kafka topic name", Header(byId[badType.Id.ToString()], "error"));
        Assert.Contains("not an object", Header(byId[badHeaders.Id.ToString()], "error"));
        Assert.Contains("created_at is infinity", Header(byId[early.Id.ToString()], "error"));
        Assert.Contains("created_at is infinity", Header(byId[late.Id.ToString()], "error"));
        foreach (var (id, record) in byId)
        {
            Assert.Equal(id, Encoding.UTF8.GetString(record.Message.Key));
            var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
            Assert.Equal(id, evt.Id);
            Assert.Equal(Origin.Polling, evt.Source.Origin);
        }
    }

    [Fact]
    public async Task A_partitioned_outbox_is_polled_and_its_rows_deleted_from_their_partitions()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("pollpart");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} (
              id uuid NOT NULL, aggregate_type text NOT NULL, aggregate_id text NOT NULL, event_type text NOT NULL,
              payload jsonb NOT NULL, headers jsonb, created_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
            CREATE INDEX ON {table} (created_at, id);
            CREATE TABLE {name}_old PARTITION OF {table} FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');
            CREATE TABLE {name}_default PARTITION OF {table} DEFAULT;
            """);
        await servers.CreateTopicAsync($"{name}.order", 3);
        var options = InProcessRelay.OptionsFor(servers, name, table, Polling(batchSize: 10));
        await using var relay = await InProcessRelay.StartAsync(options, output);

        // Rows in both partitions, interleaved in (created_at, id) order, so batches span the partitions.
        var written = Enumerable.Range(0, 60).Select(i => new TestEvent("order", $"a-{i % 4}", $"E{i}")).ToList();
        await using (var connection = new NpgsqlConnection(servers.PostgresConnectionString))
        {
            await connection.OpenAsync();
            for (var i = 0; i < written.Count; i++)
            {
                var e = written[i];
                await using var insert = new NpgsqlCommand(
                    $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES ($1, 'order', $2, $3, '{{}}', $4::timestamptz)",
                    connection);
                insert.Parameters.AddWithValue(e.Id);
                insert.Parameters.AddWithValue(e.AggregateId);
                insert.Parameters.AddWithValue(e.EventType);
                insert.Parameters.AddWithValue(i % 2 == 0 ? $"2025-01-01T00:00:{i:00}Z" : $"2026-06-01T00:00:{i:00}Z");
                await insert.ExecuteNonQueryAsync();
            }
        }

        await WaitForEmptyAsync(servers.PostgresConnectionString, table);
        var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, relay.Topic("order"));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString,
            $"SELECT (SELECT count(*) FROM {name}_old) + (SELECT count(*) FROM {name}_default)"));
        await relay.StopAsync();
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE {table}");
    }

    [Fact]
    public async Task A_worker_killed_hard_mid_batch_loses_nothing_its_rows_are_relayed_after_restart()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: Polling(batchSize: 20));
        var application = $"{outbox.Name}_poller";
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__ConnectionString"] = new NpgsqlConnectionStringBuilder(outbox.ConnectionString) { ApplicationName = application }.ConnectionString;
        // Each batch waits about 300 ms for its acknowledgements, with its transaction open.
        environment["Cdc__Kafka__Producer__linger.ms"] = "300";

        // One event per aggregate and transaction: rows of one transaction share created_at and go in id order, so
        // per-aggregate order is the order of the transactions, which commit one after another.
        var written = new List<TestEvent>();
        for (var t = 0; t < 20; t++)
        {
            var batch = Enumerable.Range(0, 10).Select(i => new TestEvent("order", $"o-{i}", $"T{t}_{i}")).ToArray();
            written.AddRange(batch);
            await outbox.CommitAsync(batch);
        }

        long leftAtKill;
        using (var first = WorkerProcess.Start(environment, output))
        {
            await first.WaitForOutputAsync("Polling table", Timeout);
            // Mid-batch: some batches deleted and committed, one selected and locked, waiting for Kafka.
            var deadline = DateTime.UtcNow + Timeout;
            while (!(await CountAsync(outbox.ConnectionString, outbox.Options.Postgres.Table) < written.Count
                     && await Sql.ScalarAsync<long>(outbox.ConnectionString,
                         "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'", application) > 0))
            {
                Assert.True(DateTime.UtcNow < deadline, "the worker never was between batches' commits");
                await Task.Delay(10);
            }
            first.KillHard();
        }
        leftAtKill = await WaitForRowLocksReleasedAsync(outbox, application);
        Assert.InRange(leftAtKill, 1, written.Count - 1);

        environment.Remove("Cdc__Kafka__Producer__linger.ms");
        using var second = WorkerProcess.Start(environment, output);
        await WaitForEmptyAsync(outbox.ConnectionString, outbox.Options.Postgres.Table);
        var records = outbox.ReadTopic(outbox.Topic("order"));
        var duplicates = DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        output.WriteLine($"killed with {leftAtKill} of {written.Count} rows left; {records.Count} records, {duplicates} duplicates");
        await second.TerminateAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(0, second.ExitCode);
    }

    [Fact]
    public async Task SIGTERM_mid_batch_lets_the_batch_be_acknowledged_deleted_and_committed_then_exits_zero()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: Polling(batchSize: 100));
        var application = $"{outbox.Name}_poller";
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Postgres__ConnectionString"] = new NpgsqlConnectionStringBuilder(outbox.ConnectionString) { ApplicationName = application }.ConnectionString;
        environment["Cdc__Kafka__Producer__linger.ms"] = "2000"; // the batch surely waits in the producer when the signal comes
        var written = Enumerable.Range(0, 50).Select(i => new TestEvent("order", $"o-{i % 5}", $"E{i}")).ToArray();
        await outbox.CommitAsync(written);

        using var worker = WorkerProcess.Start(environment, output);
        await worker.WaitForOutputAsync("Polling table", Timeout);
        var deadline = DateTime.UtcNow + Timeout;
        while (await Sql.ScalarAsync<long>(outbox.ConnectionString,
                   "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'", application) == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the worker never took a batch");
            await Task.Delay(10);
        }
        Assert.Equal(written.Length, await CountAsync(outbox.ConnectionString, outbox.Options.Postgres.Table));

        var took = await worker.TerminateAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(0, worker.ExitCode);
        Assert.True(took < TimeSpan.FromSeconds(30), $"took {took}");
        Assert.Equal(0, await CountAsync(outbox.ConnectionString, outbox.Options.Postgres.Table));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")))));
    }

    [Fact]
    public async Task Two_pollers_at_once_lose_nothing_double_nothing_and_both_are_ready_and_counted()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order", "customer"], configure: Polling(batchSize: 25));
        await outbox.ExecuteAsync($"CREATE INDEX ON {outbox.Options.Postgres.Table} (created_at, id)");
        var environment = WorkerProcess.Environment(outbox.Options);
        environment["Cdc__Kafka__Producer__linger.ms"] = "100"; // each batch takes a while, so both pollers surely get some

        var written = new List<TestEvent>();
        async Task WriteAsync(int transactions)
        {
            for (var t = 0; t < transactions; t++)
            {
                var batch = Enumerable.Range(0, 20).Select(i => new TestEvent(i % 2 == 0 ? "order" : "customer", $"a-{i % 7}", $"T{written.Count + i}")).ToArray();
                written.AddRange(batch);
                await outbox.CommitAsync(batch);
            }
        }
        await WriteAsync(50);

        using var first = WorkerProcess.Start(environment, output);
        using var second = WorkerProcess.Start(environment, output);
        await first.WaitForOutputAsync("Polling table", Timeout);
        await second.WaitForOutputAsync("Polling table", Timeout);
        await WriteAsync(25); // and more while both poll
        await WaitForEmptyAsync(outbox.ConnectionString, outbox.Options.Postgres.Table);

        var records = outbox.ReadTopic(outbox.Topic("order")).Concat(outbox.ReadTopic(outbox.Topic("customer"))).ToList();
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));

        var published = new List<double>();
        foreach (var worker in new[] { first, second })
        {
            using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl), Timeout = TimeSpan.FromSeconds(10) };
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
            var metrics = await http.GetStringAsync("/metrics");
            var count = MetricSum(metrics, "cdc_events_published_total");
            Assert.Equal(count, MetricSum(metrics, "cdc_snapshot_rows_total{otel_scope_name=\"Cdc\",origin=\"polling\"}"));
            Assert.Equal(1, MetricSum(metrics, "cdc_stream_up"));
            Assert.Equal(0, MetricSum(metrics, "cdc_events_in_flight"));
            published.Add(count);
        }
        output.WriteLine($"{written.Count} rows: {published[0]} published by one poller, {published[1]} by the other");
        Assert.All(published, p => Assert.True(p > 0, "both pollers should have relayed batches"));
        Assert.Equal(written.Count, published.Sum());

        foreach (var worker in new[] { first, second })
        {
            await worker.TerminateAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(0, worker.ExitCode);
        }
    }

    [Fact]
    public async Task A_server_with_wal_level_replica_and_a_role_without_REPLICATION_is_polled()
    {
        var shared = await fixture.GetAsync();
        await using var postgres = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
        {
            Settings = new Dictionary<string, string> { ["wal_level"] = "replica" },
        });
        var servers = new TestServers
        {
            PostgresConnectionString = postgres.ConnectionString,
            KafkaBootstrapServers = shared.KafkaBootstrapServers,
            MockCluster = shared.MockCluster,
            Description = "own PostgreSQL, wal_level=replica",
        };
        Assert.Equal("replica", await Sql.ScalarAsync<string>(postgres.ConnectionString, "SHOW wal_level"));
        var role = "poller";
        var asRole = new NpgsqlConnectionStringBuilder(postgres.ConnectionString) { Username = role }.ConnectionString;
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"],
            configure: Polling(batchSize: 10, more: o => o.Postgres.ConnectionString = asRole));
        await outbox.ExecuteAsync($"CREATE ROLE {role} LOGIN NOSUPERUSER NOREPLICATION; GRANT SELECT, UPDATE, DELETE ON {outbox.Options.Postgres.Table} TO {role}");

        await outbox.StartRelayAsync();
        var written = Enumerable.Range(0, 30).Select(i => new TestEvent("order", $"o-{i % 3}", $"E{i}")).ToArray();
        await outbox.CommitAsync(written);
        await WaitForEmptyAsync(outbox.ConnectionString, outbox.Options.Postgres.Table);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        Assert.All(records, r => Assert.Equal(Origin.Polling, OutboxEvent.Parser.ParseFrom(r.Message.Value).Source.Origin));
        await outbox.StopRelayAsync();
    }

    [Theory]
    [InlineData("SELECT, UPDATE", "lacks DELETE on public.")]
    [InlineData("SELECT, DELETE", "lacks UPDATE on public.")]
    public async Task A_role_without_the_privileges_polling_needs_is_refused_at_start_with_a_message(string granted, string message)
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: Polling(batchSize: 10));
        var role = $"{outbox.Name}_poll";
        await outbox.ExecuteAsync($"CREATE ROLE {role} LOGIN; GRANT {granted} ON {outbox.Options.Postgres.Table} TO {role}");
        var kept = new TestEvent("order", "o-1", "Kept");
        await outbox.CommitAsync(kept);
        try
        {
            var environment = WorkerProcess.Environment(outbox.Options);
            environment["Cdc__Postgres__ConnectionString"] = new NpgsqlConnectionStringBuilder(outbox.ConnectionString) { Username = role }.ConnectionString;
            using var worker = WorkerProcess.Start(environment, output);
            await worker.WaitForExitAsync(Timeout);

            Assert.Equal(1, worker.ExitCode);
            Assert.Contains(message, worker.Output);
            Assert.Contains("Cdc:Postgres:Mode=Polling needs", worker.Output);
            Assert.Contains($"GRANT SELECT, UPDATE, DELETE ON \"public\".\"{outbox.Name}_outbox\" TO \"{role}\"", worker.Output);
            Assert.DoesNotContain("   at ", worker.Output); // a message, not a stack trace
            Assert.Equal(1, await CountAsync(outbox.ConnectionString, outbox.Options.Postgres.Table));
        }
        finally
        {
            await outbox.ExecuteAsync($"REVOKE ALL ON {outbox.Options.Postgres.Table} FROM {role}; DROP ROLE {role}");
        }
    }

    static async Task<long> CountAsync(string connectionString, string table) =>
        await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM {table}");

    static async Task WaitForEmptyAsync(string connectionString, string table)
    {
        var deadline = DateTime.UtcNow + Timeout;
        long left;
        while ((left = await CountAsync(connectionString, table)) > 0)
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{table} still has {left} rows after {Timeout}");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until the killed worker's backend is gone (its transaction rolled back); returns the rows left.</summary>
    static async Task<long> WaitForRowLocksReleasedAsync(OutboxHarness outbox, string application)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (await Sql.ScalarAsync<long>(outbox.ConnectionString, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", application) > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the killed worker's backend is still there");
            await Task.Delay(20);
        }
        return await CountAsync(outbox.ConnectionString, outbox.Options.Postgres.Table);
    }

    static double MetricSum(string metrics, string name) => metrics.Split('\n')
        .Where(l => l.StartsWith(name + " ", StringComparison.Ordinal) || l.StartsWith(name + "{", StringComparison.Ordinal))
        .Select(l => double.Parse((l.Contains('}') ? l[(l.LastIndexOf('}') + 1)..] : l[name.Length..]).Split(' ', StringSplitOptions.RemoveEmptyEntries)[0],
            System.Globalization.CultureInfo.InvariantCulture))
        .DefaultIfEmpty(double.NaN).Sum();

    static string Header(ConsumeResult<byte[], byte[]> record, string name) => DeliveryAssert.Header(record, name);
}
