using System.Text;
using Cdc.Configuration;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Npgsql;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// What operators do to a live outbox table (rotate it by rename, drop and re-create it, retype a column) and publications
/// someone else created. The rule under test is the contract's first promise: a row committed to the outbox is either
/// relayed, or the slot is not confirmed past it and the worker says why. Never skipped in silence.
/// </summary>
public class TableChangesWhileStreamingTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    static string Columns(string aggregateId = "text") => $"""
        id             uuid        NOT NULL PRIMARY KEY,
        aggregate_type text        NOT NULL,
        aggregate_id   {aggregateId} NOT NULL,
        event_type     text        NOT NULL,
        payload        jsonb       NOT NULL,
        headers        jsonb,
        created_at     timestamptz NOT NULL DEFAULT now()
        """;

    static async Task<(List<TestEvent> Events, ulong Commit)> InsertAsync(string connectionString, string table, int count, string type)
    {
        var events = Enumerable.Range(0, count).Select(i => new TestEvent(type, $"a-{i % 3}", $"E{i}", $$"""{"i":{{i}}}""")).ToList();
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        foreach (var e in events)
        {
            await using var insert = new NpgsqlCommand(
                $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1, $2, $3, $4, $5::jsonb)", connection, tx);
            insert.Parameters.AddWithValue(e.Id);
            insert.Parameters.AddWithValue(e.AggregateType!);
            insert.Parameters.AddWithValue(e.AggregateId);
            insert.Parameters.AddWithValue(e.EventType);
            insert.Parameters.AddWithValue(e.Payload);
            await insert.ExecuteNonQueryAsync();
        }
        await tx.CommitAsync();
        return (events, await InProcessRelay.CurrentWalLsnAsync(connectionString));
    }

    static async Task<ulong> ConfirmedAsync(CdcOptions options) =>
        await Sql.ScalarAsync<object>(options.Postgres.ConnectionString,
            "SELECT coalesce(confirmed_flush_lsn, '0/0') FROM pg_replication_slots WHERE slot_name = $1", options.Postgres.Slot)
            is NpgsqlLogSequenceNumber lsn ? (ulong)lsn : 0;

    static bool Stopped(InProcessRelay relay)
    {
        try
        {
            relay.AssertRunning();
            return false;
        }
        catch (Xunit.Sdk.XunitException)
        {
            return true;
        }
    }

    /// <summary>Waits until the relay stops on its own or the slot is confirmed at or past <paramref name="lsn"/>; returns whether it stopped.</summary>
    static async Task<bool> StoppedOrConfirmedPastAsync(InProcessRelay relay, ulong lsn)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Stopped(relay))
                return true;
            if (await ConfirmedAsync(relay.Options) >= lsn)
                return false;
            await Task.Delay(100);
        }
        throw new TimeoutException("the relay neither stopped nor confirmed the slot past the rows");
    }

    [Fact]
    public async Task Rotating_the_outbox_by_rename_and_create_while_streaming_never_confirms_past_rows_of_the_new_table()
    {
        // A common maintenance move (bloat, archiving): ALTER TABLE outbox RENAME TO outbox_old; CREATE TABLE outbox (...),
        // and the new table is even added to the connector's publication. The service now writes to the new table.
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("rotate");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"CREATE TABLE {table} ({Columns()})");
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);
        try
        {
            var (before, _) = await InsertAsync(servers.PostgresConnectionString, table, 5, "order");
            await relay.WaitForCaughtUpAsync(Timeout);

            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
                ALTER TABLE {table} RENAME TO {name}_old;
                CREATE TABLE {table} ({Columns()});
                ALTER PUBLICATION {options.Postgres.Publication} ADD TABLE {table};
                """);
            var (after, commit) = await InsertAsync(servers.PostgresConnectionString, table, 5, "order");

            var stopped = await StoppedOrConfirmedPastAsync(relay, commit);
            var delivered = DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order"));
            if (stopped)
                Assert.True(await ConfirmedAsync(options) < commit, "the worker stopped, but only after confirming past rows it never relayed");
            else
                DeliveryAssert.EveryEventOnce(before.Concat(after), delivered);
        }
        finally
        {
            await relay.DisposeAsync();
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}, {name}_old");
        }
    }

    [Fact]
    public async Task Dropping_and_recreating_the_outbox_under_a_for_all_tables_publication_never_confirms_past_rows_of_the_new_table()
    {
        // The publication is the DBA's: FOR ALL TABLES, so the re-created table is published at once and its rows are
        // in the stream. The worker may stop (it does, after up to 5 s), but must not confirm past those rows: a restart
        // would then never see them.
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("recreate");
        var table = $"public.{name}";
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} ({Columns()});
            CREATE PUBLICATION {options.Postgres.Publication} FOR ALL TABLES WITH (publish = 'insert');
            """);
        await servers.CreateTopicAsync($"{name}.order", 3);
        var relay = await InProcessRelay.StartAsync(options, output);
        try
        {
            var (before, _) = await InsertAsync(servers.PostgresConnectionString, table, 5, "order");
            await relay.WaitForCaughtUpAsync(Timeout);

            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE {table}; CREATE TABLE {table} ({Columns()});");
            var (after, commit) = await InsertAsync(servers.PostgresConnectionString, table, 5, "order");

            // Whatever the first worker does, a worker started after it must relay the new table's rows.
            var deadline = DateTime.UtcNow + Timeout;
            while (!Stopped(relay) && DateTime.UtcNow < deadline)
                await Task.Delay(200);
            output.WriteLine($"first worker stopped: {Stopped(relay)}; confirmed {new NpgsqlLogSequenceNumber(await ConfirmedAsync(options))}, " +
                             $"new rows committed before {new NpgsqlLogSequenceNumber(commit)}");
            await relay.StopAsync().ContinueWith(_ => { });
            await using var second = await InProcessRelay.StartAsync(options, output);
            await second.WaitForConfirmedAsync(commit, Timeout);

            var delivered = DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order"));
            DeliveryAssert.EveryEventOnce(before.Concat(after), delivered);
        }
        finally
        {
            await relay.DisposeAsync();
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}");
        }
    }

    [Fact]
    public async Task Retyping_aggregate_id_to_bigint_while_streaming_never_publishes_its_binary_form_as_the_key()
    {
        // At start a bigint aggregate_id is refused (Cdc:Postgres:Columns:AggregateId expects a text type). While streaming,
        // the same change must not turn every key into the integer's 8 raw bytes (another partition, another key).
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("retype");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"CREATE TABLE {table} ({Columns()})");
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);
        try
        {
            await Sql.ExecuteAsync(servers.PostgresConnectionString,
                $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES (gen_random_uuid(), 'order', '42', 'Before', '[]')");
            await relay.WaitForCaughtUpAsync(Timeout);

            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
                ALTER TABLE {table} ALTER COLUMN aggregate_id TYPE bigint USING aggregate_id::bigint;
                INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES (gen_random_uuid(), 'order', 42, 'After', '[]');
                """);
            var commit = await InProcessRelay.CurrentWalLsnAsync(servers.PostgresConnectionString);
            var stopped = await StoppedOrConfirmedPastAsync(relay, commit);

            var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order");
            foreach (var record in records)
            {
                var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
                Assert.Equal("42", Encoding.UTF8.GetString(record.Message.Key));
                Assert.Equal("42", evt.AggregateId);
            }
            if (!stopped)
                Assert.Equal(2, records.Count);
        }
        finally
        {
            await relay.DisposeAsync();
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}");
        }
    }

    [Fact]
    public async Task A_publication_whose_column_list_leaves_out_created_at_stops_the_worker_with_a_message_instead_of_restarting_forever()
    {
        // PostgreSQL 15 column lists: the DBA's publication publishes only some columns. Rows then arrive without
        // created_at and headers; the worker can never read them, so it must say so and stop (as it does for a
        // publication listing partitions), not restart the stream every few seconds for ever.
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("collist");
        var table = $"public.{name}";
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} ({Columns()});
            CREATE PUBLICATION {options.Postgres.Publication} FOR TABLE {table} (id, aggregate_type, aggregate_id, event_type, payload)
              WITH (publish = 'insert');
            """);
        await servers.CreateTopicAsync($"{name}.order", 3);
        InProcessRelay? relay = null;
        try
        {
            try
            {
                relay = await InProcessRelay.StartAsync(options, output);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                // Refused at start: what we want.
                Assert.Contains("Publication", e.Message, StringComparison.OrdinalIgnoreCase);
                return;
            }
            await InsertAsync(servers.PostgresConnectionString, table, 3, "order");
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!Stopped(relay) && DateTime.UtcNow < deadline)
                await Task.Delay(200);
            output.WriteLine($"stream restarts meanwhile: {relay.Logs.Count(l => l.Contains("Stream interrupted") || l.Contains("Still failing"))}");
            Assert.True(Stopped(relay), "the worker kept restarting the stream for a minute instead of stopping with a message");
            var e2 = Assert.Throws<Xunit.Sdk.XunitException>(relay.AssertRunning);
            Assert.Contains("publication", e2.Message, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            if (relay is not null)
                await relay.DisposeAsync();
            else
                await InProcessRelay.DropSlotAndPublicationAsync(options);
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}");
        }
    }

    [Fact]
    public async Task Rows_of_a_partition_detached_before_they_were_relayed_are_relayed_under_a_publication_without_publish_via_partition_root()
    {
        // A DBA's publication FOR TABLE outbox (publish_via_partition_root = false, accepted with an information line):
        // rows arrive under each partition's relation id, and the worker asks the *current* catalog whether that relation
        // is a partition of the outbox. A partition detached (archived, or split) after rows were committed to it but
        // before the worker read them (it was stopped, or behind a Kafka outage) is then "another table": its rows are
        // skipped and the slot confirmed past them.
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("detach");
        var table = $"public.{name}";
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} ({Columns().Replace("uuid        NOT NULL PRIMARY KEY", "uuid NOT NULL")}, PRIMARY KEY (id, aggregate_type))
              PARTITION BY LIST (aggregate_type);
            CREATE TABLE {table}_order PARTITION OF {table} FOR VALUES IN ('order');
            CREATE TABLE {table}_default PARTITION OF {table} DEFAULT;
            CREATE PUBLICATION {options.Postgres.Publication} FOR TABLE {table} WITH (publish = 'insert');
            """);
        // Refused at start (it could hide rows); with publish_via_partition_root = true the same scenario loses nothing.
        await AssertRefusedUntilViaRootAsync(servers, options);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await servers.CreateTopicAsync($"{name}.invoice", 3);
        var relay = await InProcessRelay.StartAsync(options, output);
        try
        {
            var (first, _) = await InsertAsync(servers.PostgresConnectionString, table, 3, "order");
            await relay.WaitForCaughtUpAsync(Timeout);
            await relay.StopAsync();

            // While the worker is stopped: rows are committed, then their partition is detached (and kept).
            var (whileStopped, _) = await InsertAsync(servers.PostgresConnectionString, table, 5, "order");
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"ALTER TABLE {table} DETACH PARTITION {table}_order");
            var (later, commit) = await InsertAsync(servers.PostgresConnectionString, table, 2, "invoice");

            await using var second = await InProcessRelay.StartAsync(options, output);
            await second.WaitForConfirmedAsync(commit, Timeout);
            var orders = DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order"));
            DeliveryAssert.EveryEventOnce(first.Concat(whileStopped), orders);
            DeliveryAssert.EveryEventOnce(later, DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.invoice")));
        }
        finally
        {
            await relay.DisposeAsync();
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}, {table}_order");
        }
    }

    [Fact]
    public async Task A_text_id_json_columns_odd_headers_and_schema_changes_of_other_columns_while_streaming_lose_nothing()
    {
        // What held in review: text id, json (not jsonb) payload and headers, unicode keys, NULL headers, non-string header
        // values; columns added, dropped and renamed (not the configured ones), TRUNCATE and VACUUM FULL while streaming.
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("shapes");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} (id text PRIMARY KEY, note text, aggregate_type text NOT NULL, aggregate_id text NOT NULL,
              event_type text NOT NULL, payload json NOT NULL, headers json, created_at timestamptz NOT NULL DEFAULT now());
            """);
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);
        try
        {
            var expected = new List<(string Id, string Key, string? Headers)>();
            async Task Insert(string id, string key, string? headers)
            {
                await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
                await connection.OpenAsync();
                await using var insert = new NpgsqlCommand(
                    $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ($1, 'order', $2, 'E', '{{\"a\": [1, 2]}}', $3::json)",
                    connection);
                insert.Parameters.AddWithValue(id);
                insert.Parameters.AddWithValue(key);
                insert.Parameters.Add(new NpgsqlParameter { Value = (object?)headers ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
                await insert.ExecuteNonQueryAsync();
                expected.Add((id, key, headers));
            }
            await Insert("order-1", "ünïcødé-🚀", """{"traceparent": "00-abc", "n": 1.50, "b": true, "o": {"x": [1, {"y": null}]}, "nul": null, "": "empty name"}""");
            await Insert("order-2", "k", null);
            await Insert("order-3", "k", "null");
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"ALTER TABLE {table} ADD COLUMN extra int DEFAULT 7");
            await Insert("order-4", "k", "{}");
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"ALTER TABLE {table} DROP COLUMN note");
            await Insert("order-5", "k", null);
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"ALTER TABLE {table} RENAME COLUMN extra TO extra2");
            await Insert("order-6", "k", null);
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"TRUNCATE {table}");
            await Insert("order-7", "k", null);
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"VACUUM FULL {table}");
            await Insert("order-8", "k", null);
            await relay.WaitForCaughtUpAsync(Timeout);

            var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order").ToDictionary(r => DeliveryAssert.Header(r, "id"));
            Assert.Equal(expected.Select(e => e.Id).Order(), records.Keys.Order());
            var first = records["order-1"];
            Assert.Equal("ünïcødé-🚀", Encoding.UTF8.GetString(first.Message.Key));
            var evt = OutboxEvent.Parser.ParseFrom(first.Message.Value);
            Assert.Equal("00-abc", evt.Headers["traceparent"]);
            Assert.Equal("1.50", evt.Headers["n"]);
            Assert.Equal("true", evt.Headers["b"]);
            Assert.Equal("""{"x": [1, {"y": null}]}""", evt.Headers["o"]);
            Assert.Equal("null", evt.Headers["nul"]);
            Assert.Equal("""{"a": [1, 2]}""", evt.Payload.ToStringUtf8());
            Assert.Equal("1.50", DeliveryAssert.Header(first, "n"));
        }
        finally
        {
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}");
        }
    }

    [Fact]
    public async Task A_headers_object_with_a_deeply_nested_value_is_published_with_the_value_as_its_json_text()
    {
        // The contract: header values that are not strings travel as their JSON text. jsonb accepts any depth; the mapper's
        // Utf8JsonReader stops at 64 levels and the row goes to the dead-letter topic as "headers is not valid JSON".
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();
        var deep = string.Concat(Enumerable.Repeat("[", 70)) + "1" + string.Concat(Enumerable.Repeat("]", 70));
        var nested = new TestEvent("order", "o-1", "Nested", "{}", $$"""{"traceparent":"00-abc","context":{{deep}}}""");
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync(nested), Timeout);

        var dead = outbox.ReadTopic(outbox.DeadLetterTopic);
        Assert.True(dead.Count == 0, $"dead-lettered: {string.Join("; ", dead.Select(d => DeliveryAssert.Header(d, "error")))}");
        var record = Assert.Single(outbox.ReadTopic(outbox.Topic("order")));
        Assert.Equal("00-abc", DeliveryAssert.Header(record, "traceparent"));
    }

    [Fact]
    public async Task A_table_attached_as_a_partition_after_it_was_written_to_is_relayed_under_a_for_all_tables_publication()
    {
        // A DBA's FOR ALL TABLES publication (publish_via_partition_root is off by default): every table's inserts are in
        // the stream under their own relation. A table that is written to before it is attached as a partition (loaded,
        // then attached: the usual way to add a partition without a long lock) was filed as "not the outbox" for the rest
        // of the session, so the rows routed to it once it is a partition are skipped and the slot confirmed past them.
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("attach");
        var table = $"public.{name}";
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} ({Columns().Replace("uuid        NOT NULL PRIMARY KEY", "uuid NOT NULL")}, PRIMARY KEY (id, aggregate_type))
              PARTITION BY LIST (aggregate_type);
            CREATE TABLE {table}_order PARTITION OF {table} FOR VALUES IN ('order');
            CREATE PUBLICATION {options.Postgres.Publication} FOR ALL TABLES WITH (publish = 'insert');
            """);
        // Refused at start (it could hide rows); with publish_via_partition_root = true the same scenario loses nothing.
        await AssertRefusedUntilViaRootAsync(servers, options);
        await servers.CreateTopicAsync($"{name}.order", 3);
        await servers.CreateTopicAsync($"{name}.invoice", 3);
        await using var relay = await InProcessRelay.StartAsync(options, output);
        try
        {
            var (orders, _) = await InsertAsync(servers.PostgresConnectionString, table, 3, "order");
            // The new partition is created on its own, loaded with a row of its own, then attached.
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
                CREATE TABLE {table}_invoice (LIKE {table} INCLUDING DEFAULTS);
                INSERT INTO {table}_invoice (id, aggregate_type, aggregate_id, event_type, payload) VALUES (gen_random_uuid(), 'invoice', 'seed', 'Seed', '[]');
                DELETE FROM {table}_invoice;
                """);
            await relay.WaitForCaughtUpAsync(Timeout);
            await Sql.ExecuteAsync(servers.PostgresConnectionString,
                $"ALTER TABLE {table} ATTACH PARTITION {table}_invoice FOR VALUES IN ('invoice')");
            var (invoices, commit) = await InsertAsync(servers.PostgresConnectionString, table, 4, "invoice");
            await relay.WaitForConfirmedAsync(commit, Timeout);

            DeliveryAssert.EveryEventOnce(orders, DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order")));
            DeliveryAssert.EveryEventOnce(invoices, DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.invoice")));
        }
        finally
        {
            await relay.DisposeAsync();
            await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}");
        }
    }

    /// <summary>The worker refuses a publication without publish_via_partition_root for a partitioned outbox; the test then sets it.</summary>
    static async Task AssertRefusedUntilViaRootAsync(TestServers servers, Cdc.Configuration.CdcOptions options)
    {
        var status = new Cdc.Relay.RelayStatus();
        using var stop = new CancellationTokenSource(Timeout);
        var refused = await Assert.ThrowsAsync<Cdc.Configuration.CdcConfigurationException>(() =>
            new Cdc.Relay.OutboxRelay(options, Microsoft.Extensions.Logging.Abstractions.NullLogger<Cdc.Relay.OutboxRelay>.Instance,
                new Cdc.Telemetry.CdcMetrics(status), status).RunAsync(stop.Token));
        Assert.Equal("Cdc:Postgres:Publication", refused.Key);
        Assert.Contains("SET (publish_via_partition_root = true)", refused.Message);
        await Sql.ExecuteAsync(servers.PostgresConnectionString,
            $"ALTER PUBLICATION {options.Postgres.Publication} SET (publish_via_partition_root = true)");
    }
}
