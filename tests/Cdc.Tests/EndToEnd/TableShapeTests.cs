using System.Text;
using Cdc.Configuration;
using Cdc.Outbox.V1;
using Cdc.Relay;
using Cdc.Telemetry;
using Cdc.Tests.Fixtures;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// Outbox tables of other shapes than the contract's plain one: partitioned (with a default partition, partitions
/// attached and detached while streaming), renamed while streaming, with a <c>timestamp</c> column, and rows whose
/// values cannot become an event. Each relays everything, or refuses at start with a message; none loses a row silently.
/// </summary>
public class TableShapeTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static string Columns(string createdAt = "timestamptz") => $"""
        id             uuid        NOT NULL,
        aggregate_type text        NOT NULL,
        aggregate_id   text        NOT NULL,
        event_type     text        NOT NULL,
        payload        jsonb       NOT NULL,
        headers        jsonb,
        created_at     {createdAt} NOT NULL DEFAULT now()
        """;

    /// <summary>A range-partitioned outbox: last month, this month, and a default partition for the rest.</summary>
    static string PartitionedTable(string table) => $"""
        CREATE TABLE {table} ({Columns()}, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
        CREATE TABLE {table}_old PARTITION OF {table} FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');
        CREATE TABLE {table}_now PARTITION OF {table} FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE TABLE {table}_default PARTITION OF {table} DEFAULT;
        """;

    static async Task<List<TestEvent>> InsertAsync(string connectionString, string table, int count, string type, string? createdAt = null)
    {
        var events = Enumerable.Range(0, count).Select(i => new TestEvent(type, $"a-{i % 5}", $"E{i}", $$"""{"i":{{i}}}""")).ToList();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        for (var i = 0; i < events.Count; i++)
        {
            var e = events[i];
            // Spread over the partitions: the old one, this year's and the default (2030).
            var at = createdAt ?? (i % 3) switch { 0 => "2025-06-01T00:00:00Z", 1 => "2026-06-01T00:00:00Z", _ => "2030-06-01T00:00:00Z" };
            await using var insert = new NpgsqlCommand(
                $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6::timestamptz)",
                connection, tx);
            insert.Parameters.AddWithValue(e.Id);
            insert.Parameters.AddWithValue(e.AggregateType!);
            insert.Parameters.AddWithValue(e.AggregateId);
            insert.Parameters.AddWithValue(e.EventType);
            insert.Parameters.AddWithValue(e.Payload);
            insert.Parameters.AddWithValue(at);
            await insert.ExecuteNonQueryAsync();
        }
        await tx.CommitAsync();
        return events;
    }

    [Fact]
    public async Task A_partitioned_outbox_with_a_default_partition_is_relayed_and_attaching_or_detaching_partitions_while_streaming_changes_nothing()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("part");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, PartitionedTable(table));
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);

        var written = await InsertAsync(servers.PostgresConnectionString, table, 200, "order");
        await relay.WaitForCaughtUpAsync(Timeout);
        Assert.Equal(1L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString,
            "SELECT count(*) FROM pg_publication WHERE pubname = $1 AND pubviaroot", options.Postgres.Publication));

        // A new partition attached while streaming, one detached (its rows are no longer the outbox's), more rows.
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table}_2027 (LIKE {table} INCLUDING DEFAULTS);
            ALTER TABLE {table} ATTACH PARTITION {table}_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');
            ALTER TABLE {table} DETACH PARTITION {table}_old;
            """);
        written.AddRange(await InsertAsync(servers.PostgresConnectionString, table, 30, "order", "2027-03-01T00:00:00Z"));
        written.AddRange(await InsertAsync(servers.PostgresConnectionString, table, 30, "order"));
        await relay.WaitForCaughtUpAsync(Timeout);

        var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order");
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, records);
        var evt = OutboxEvent.Parser.ParseFrom(records[0].Message.Value);
        Assert.Equal("order", evt.AggregateType);
    }

    [Fact]
    public async Task An_existing_publication_of_the_partitioned_table_without_publish_via_partition_root_is_refused_naming_the_fix()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("partleaf");
        var table = $"public.{name}";
        var options = InProcessRelay.OptionsFor(servers, name, table);
        // What an older connector (or a DBA) created: changes would arrive under each partition's own name, and the rows
        // of a partition detached before they were read could no longer be told from another table's.
        await Sql.ExecuteAsync(servers.PostgresConnectionString, PartitionedTable(table) +
            $"CREATE PUBLICATION {options.Postgres.Publication} FOR TABLE {table} WITH (publish = 'insert');");
        try
        {
            var e = await Assert.ThrowsAsync<CdcConfigurationException>(() => RunUntilStoppedAsync(options));
            Assert.Equal("Cdc:Postgres:Publication", e.Key);
            Assert.Contains($"ALTER PUBLICATION \"{options.Postgres.Publication}\" SET (publish_via_partition_root = true)", e.Message);
        }
        finally
        {
            await InProcessRelay.DropSlotAndPublicationAsync(options);
        }
    }

    [Fact]
    public async Task A_publication_that_lists_partitions_instead_of_the_table_is_refused_at_start_naming_the_key()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("partsome");
        var table = $"public.{name}";
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, PartitionedTable(table) +
            $"CREATE PUBLICATION {options.Postgres.Publication} FOR TABLE {table}_now, {table}_default WITH (publish = 'insert');");
        try
        {
            var e = await Assert.ThrowsAsync<CdcConfigurationException>(() => RunUntilStoppedAsync(options));
            Assert.Equal("Cdc:Postgres:Publication", e.Key);
            Assert.Contains($"does not include the partitioned table {table} itself and misses 1 of its partitions", e.Message);
            Assert.Contains("publish_via_partition_root = true", e.Message);
        }
        finally
        {
            await InProcessRelay.DropSlotAndPublicationAsync(options);
        }
    }

    [Fact]
    public async Task A_created_at_without_time_zone_is_refused_at_start_naming_the_key()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("tsnotz");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"CREATE TABLE {table} ({Columns("timestamp")}, PRIMARY KEY (id))");
        var options = InProcessRelay.OptionsFor(servers, name, table);
        try
        {
            var e = await Assert.ThrowsAsync<CdcConfigurationException>(() => RunUntilStoppedAsync(options));
            Assert.Equal("Cdc:Postgres:Columns:CreatedAt", e.Key);
            Assert.Contains("is timestamp without time zone; it must be timestamptz", e.Message);
        }
        finally
        {
            await InProcessRelay.DropSlotAndPublicationAsync(options);
        }
    }

    [Fact]
    public async Task Renaming_the_outbox_table_while_streaming_keeps_relaying_its_rows_and_says_so()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("rename");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"CREATE TABLE {table} ({Columns()}, PRIMARY KEY (id))");
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);

        var written = await InsertAsync(servers.PostgresConnectionString, table, 10, "order", "2026-06-01T00:00:00Z");
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"ALTER TABLE {table} RENAME TO {name}_renamed");
        written.AddRange(await InsertAsync(servers.PostgresConnectionString, $"public.{name}_renamed", 10, "order", "2026-06-01T00:00:00Z"));
        await relay.WaitForCaughtUpAsync(Timeout);

        var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order");
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(records)));
        Assert.Single(relay.Logs, l => l.Contains($"is named public.{name}_renamed in the stream: it was renamed"));
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS public.{name}_renamed");
    }

    [Fact]
    public async Task Rows_whose_values_cannot_become_an_event_are_dead_lettered_with_the_reason_and_the_stream_goes_on()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();
        var before = new TestEvent("order", "o-1", "Before");
        var farFuture = new TestEvent("order", "o-1", "FarFuture");
        var infinite = new TestEvent("order", "o-1", "Infinite");
        var after = new TestEvent("order", "o-1", "After");
        await outbox.CommitAsync(before);
        await outbox.WriteAsync([], commit: true, extraSql: $"""
            INSERT INTO {outbox.Options.Postgres.Table} (id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES
              ('{farFuture.Id}', 'order', 'o-1', 'FarFuture', '{"{}"}', '10000-01-01T00:00:00Z'),
              ('{infinite.Id}', 'order', 'o-1', 'Infinite', '{"{}"}', 'infinity')
            """);
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(after), Timeout);

        Assert.Equal([before.Id.ToString(), after.Id.ToString()], DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order"))));
        var dead = outbox.ReadTopic(outbox.DeadLetterTopic).ToDictionary(r => Encoding.UTF8.GetString(r.Message.Key));
        Assert.Contains("outside the years 1 to 9999", DeliveryAssert.Header(dead[farFuture.Id.ToString()], "error"));
        Assert.Contains("created_at is infinity", DeliveryAssert.Header(dead[infinite.Id.ToString()], "error"));
        Assert.Equal("FarFuture", OutboxEvent.Parser.ParseFrom(dead[farFuture.Id.ToString()].Message.Value).EventType);
        outbox.AssertRelayRunning();
    }

    [Fact]
    public async Task The_retention_job_on_a_partitioned_outbox_deletes_old_relayed_rows_by_key_and_keeps_the_rest()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("partret");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, PartitionedTable(table));
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);
        // One old row and one recent row in every partition: the same ctid exists in each of them.
        await InsertAsync(servers.PostgresConnectionString, table, 3, "order", "2025-06-01T00:00:00Z");
        await InsertAsync(servers.PostgresConnectionString, table, 3, "order", "2026-06-01T00:00:00Z");
        var recent = await InsertAsync(servers.PostgresConnectionString, table, 3, "order", DateTime.UtcNow.AddHours(1).ToString("O"));
        await relay.WaitForCaughtUpAsync(Timeout);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"SELECT 1"); // the confirmed commit time is now past every row

        var retention = new OutboxRetention(options, relay.Status, new CdcMetrics(new RelayStatus()), NullLogger.Instance);
        var deleted = await retention.DeleteOnceAsync(options.Postgres.OutboxTable!.Value, TimeSpan.FromDays(1), CancellationToken.None);
        Assert.Equal(6, deleted);
        var left = await Sql.ScalarAsync<long>(servers.PostgresConnectionString, $"SELECT count(*) FROM {table} WHERE id = ANY($1)",
            recent.Select(e => e.Id).ToArray());
        Assert.Equal(3L, left);
    }

    /// <summary>Runs the relay until it stops on its own (it should: these tests expect a refusal at start).</summary>
    async Task RunUntilStoppedAsync(CdcOptions options)
    {
        using var stop = new CancellationTokenSource(Timeout);
        var status = new RelayStatus();
        await new OutboxRelay(options, NullLogger<OutboxRelay>.Instance, new CdcMetrics(status), status).RunAsync(stop.Token);
        output.WriteLine("the relay stopped without an error");
    }
}
