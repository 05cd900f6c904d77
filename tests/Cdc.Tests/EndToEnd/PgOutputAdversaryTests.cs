using System.Diagnostics;
using System.Text;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Google.Protobuf;
using Npgsql;
using NpgsqlTypes;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// Adversarial review of the connector's own pgoutput parser (SlotReader, PgOutput/*, OutboxRowReader) and of the shared
/// admin client: streams with messages larger than the reused 64 KiB buffer, table shapes whose Relation message and
/// tuple must line up (dropped, added, custom-typed columns, text ids), and stream content the parser must skip whole
/// (Origin, Type, Update, Delete, Truncate, foreign and non-transactional logical messages), each checked against what
/// arrives in Kafka byte for byte and against the slot's confirmed position.
/// </summary>
public class PgOutputAdversaryTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    static Dictionary<string, OutboxEvent> EventsById(IEnumerable<Confluent.Kafka.ConsumeResult<byte[], byte[]>> records) =>
        records.Select(r => OutboxEvent.Parser.ParseFrom(r.Message.Value)).GroupBy(e => e.Id).ToDictionary(g => g.Key, g => g.First());

    static string Insert(string table, TestEvent e) =>
        $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('{e.Id}', '{e.AggregateType}', '{e.AggregateId}', '{e.EventType}', '{e.Payload}')";

    /// <summary>Runs each statement on its own, all in one transaction.</summary>
    static async Task InOneTransactionAsync(string connectionString, params string[] statements)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        foreach (var sql in statements)
        {
            await using var command = new NpgsqlCommand(sql, connection, tx);
            await command.ExecuteNonQueryAsync();
        }
        await tx.CommitAsync();
    }

    [Fact]
    public async Task Rows_larger_than_the_reused_buffer_interleaved_with_small_ones_and_around_its_size_arrive_byte_exact()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["blob"], payloadType: "bytea");
        await outbox.StartRelayAsync();

        // One transaction: large (own array), small (reused buffer), large again, then sizes straddling 64 KiB, so a later
        // message's bytes would show in an earlier row's values if anything kept a view of the buffer.
        var sizes = new List<int> { 300_000, 10, 70_000, 3, 520_000, 1 };
        for (var size = 65_300; size <= 65_600; size += 25)
            sizes.Add(size);
        var written = sizes.Select((size, i) => (Event: new TestEvent("blob", $"agg-{i}-€", $"Big{i}",
                Convert.ToBase64String(RandomBytes(size, i)), Headers: $$"""{"n":"{{i}}","ünï":"ç{{new string('h', i * 997)}}"}"""),
            Bytes: RandomBytes(size, i))).ToList();
        var lsn = await outbox.WriteAsync([.. written.Select(w => w.Event)], commit: true);
        // A second transaction with one more big row, after the first's rows have been handed on.
        var last = new TestEvent("blob", "agg-last", "Last", Convert.ToBase64String(RandomBytes(200_000, 999)));
        lsn = await outbox.CommitAsync(last);
        written.Add((last, RandomBytes(200_000, 999)));
        await outbox.WaitForConfirmedAsync(lsn, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("blob"));
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written.Select(w => w.Event), DeliveryAssert.Ids(records)));
        Assert.Empty(outbox.ReadTopic(outbox.DeadLetterTopic));
        var events = EventsById(records);
        foreach (var (e, bytes) in written)
        {
            var evt = events[e.Id.ToString()];
            Assert.Equal(e.AggregateId, evt.AggregateId);
            Assert.Equal(e.EventType, evt.EventType);
            Assert.True(bytes.AsSpan().SequenceEqual(evt.Payload.Span), $"payload of {e.EventType} ({bytes.Length} bytes) differs");
            if (e.Headers is not null)
            {
                var expected = System.Text.Json.JsonDocument.Parse(e.Headers).RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
                Assert.Equal(expected, evt.Headers.ToDictionary(h => h.Key, h => (string?)h.Value));
            }
        }
        Assert.True(await outbox.ConfirmedFlushLsnAsync() <= await outbox.CurrentWalLsnAsync());
        outbox.AssertRelayRunning();
    }

    [Fact]
    public async Task A_wide_outbox_with_dropped_added_and_custom_typed_columns_and_a_text_id_relays_every_value_in_its_column()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("wide");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TYPE {name}_mood AS ENUM ('happy', 'sad');
            CREATE DOMAIN {name}_dom AS text CHECK (VALUE <> '');
            CREATE TABLE {table} (
              pre_int        int,
              pre_gone       text,
              pre_mood       {name}_mood,
              id             text        PRIMARY KEY,
              mid_dom        {name}_dom,
              aggregate_type text        NOT NULL,
              mid_gone       bytea,
              aggregate_id   text        NOT NULL,
              mid_arr        int[],
              event_type     text        NOT NULL,
              payload        jsonb       NOT NULL,
              mid_gen        int GENERATED ALWAYS AS (pre_int * 2) STORED,
              headers        jsonb,
              created_at     timestamptz NOT NULL DEFAULT now(),
              tail_big       text,
              tail_json      json
            );
            ALTER TABLE {table} DROP COLUMN pre_gone;
            """);
        var options = InProcessRelay.OptionsFor(servers, name, table);
        await servers.CreateTopicAsync($"{name}.wide", 3);
        await servers.CreateTopicAsync(options.Kafka.DeadLetterTopic, 1);
        var expected = new List<(string Id, string AggregateId, string EventType, string Payload, string? Headers)>();

        async Task InsertAsync(string columns, string values, (string Id, string AggregateId, string EventType, string Payload, string? Headers) e)
        {
            await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
            await connection.OpenAsync();
            await using var insert = new NpgsqlCommand(
                $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, headers{columns}) VALUES ($1, 'wide', $2, $3, $4::jsonb, $5::jsonb{values})",
                connection);
            insert.Parameters.AddWithValue(e.Id);
            insert.Parameters.AddWithValue(e.AggregateId);
            insert.Parameters.AddWithValue(e.EventType);
            insert.Parameters.AddWithValue(e.Payload);
            insert.Parameters.Add(new NpgsqlParameter { Value = (object?)e.Headers ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Text });
            await insert.ExecuteNonQueryAsync();
            expected.Add(e);
        }

        await using var relay = await InProcessRelay.StartAsync(options, output);
        // Every extra column filled (a TOASTed one among them), then every nullable one NULL.
        await InsertAsync(", pre_int, pre_mood, mid_dom, mid_gone, mid_arr, tail_big, tail_json",
            $", 7, 'sad', 'dom', '\\xdeadbeef', ARRAY[1,2,3], repeat('x', 300000), '{{\"a\": [1, 2]}}'",
            ("ïd-1-日本", "агрегат-1", "Événement", """{"ключ": "значение", "n": 1}""", """{"traceparent": "00-ab", "ü": "ß"}"""));
        await InsertAsync("", "", ("id-2", "a-2", "E2", "{}", null));
        // Columns changed while streaming: one dropped between outbox columns, one added at the end, one renamed.
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            ALTER TABLE {table} DROP COLUMN mid_gone;
            ALTER TABLE {table} ADD COLUMN tail_new bytea;
            ALTER TABLE {table} RENAME COLUMN mid_arr TO mid_arr2;
            """);
        await InsertAsync(", pre_int, tail_new, mid_arr2", ", -1, decode(repeat('ab', 100000), 'hex'), '{}'",
            ("id-3", "a-3", "E3", """{"after": "drop"}""", """{"k": "v"}"""));
        await InsertAsync("", "", ("id-4", "a-4", "E4", "[]", "{}"));
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            ALTER TABLE {table} DROP COLUMN pre_int CASCADE;
            ALTER TABLE {table} ADD COLUMN tail_mood {name}_mood DEFAULT 'happy';
            """);
        await InsertAsync(", tail_big", ", repeat('y', 70000)", ("id-5", "a-5", "E5", """{"last": true}""", null));
        await relay.WaitForCaughtUpAsync(Timeout);

        var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.wide");
        Assert.Empty(KafkaReader.ReadAll(servers.KafkaBootstrapServers, options.Kafka.DeadLetterTopic));
        var events = EventsById(records);
        Assert.Equal(expected.Select(e => e.Id).Order(), events.Keys.Order());
        foreach (var e in expected)
        {
            var evt = events[e.Id];
            Assert.Equal(("wide", e.AggregateId, e.EventType), (evt.AggregateType, evt.AggregateId, evt.EventType));
            // jsonb keeps its own key order: compare as JSON.
            Assert.True(System.Text.Json.Nodes.JsonNode.DeepEquals(System.Text.Json.Nodes.JsonNode.Parse(e.Payload),
                System.Text.Json.Nodes.JsonNode.Parse(evt.Payload.ToStringUtf8())), $"payload of {e.Id}: {evt.Payload.ToStringUtf8()}");
            var headers = e.Headers is null ? [] :
                System.Text.Json.JsonDocument.Parse(e.Headers).RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
            Assert.Equal(headers, evt.Headers.ToDictionary(h => h.Key, h => h.Value));
        }
        relay.AssertRunning();
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"DROP TABLE IF EXISTS {table}; DROP TYPE IF EXISTS {name}_mood; DROP DOMAIN IF EXISTS {name}_dom");
    }

    [Fact]
    public async Task Origins_updates_deletes_truncates_and_foreign_or_large_messages_in_a_publication_publishing_them_are_skipped_without_loss_or_overconfirming()
    {
        var servers = await fixture.GetAsync();
        var prefix = $"adv.{Guid.NewGuid():N}";
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"], configure: o => o.Postgres.MessagePrefix = prefix);
        var table = outbox.Options.Postgres.Table;
        var business = $"public.{outbox.Name}_business";
        var origin = $"{outbox.Name}_origin";
        // A user-made publication with the default publish (insert, update, delete, truncate) of the outbox and another table.
        await outbox.ExecuteAsync($"""
            CREATE PUBLICATION {outbox.Options.Postgres.Publication} FOR TABLE {table}, {business};
            SELECT pg_replication_origin_create('{origin}');
            """);
        await outbox.StartRelayAsync();
        var written = new List<TestEvent>();

        // 1. Rows written in a replication origin's session: pgoutput sends an Origin message after Begin.
        await using (var connection = new NpgsqlConnection(outbox.ConnectionString))
        {
            await connection.OpenAsync();
            await using (var setup = new NpgsqlCommand($"SELECT pg_replication_origin_session_setup('{origin}')", connection))
                await setup.ExecuteNonQueryAsync();
            for (var t = 0; t < 2; t++)
            {
                await using var tx = await connection.BeginTransactionAsync();
                var e = new TestEvent("order", "o-origin", $"FromOrigin{t}", $$"""{"t":{{t}}}""");
                await using var insert = new NpgsqlCommand(
                    $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1, 'order', $2, $3, $4::jsonb)", connection, tx);
                insert.Parameters.AddWithValue(e.Id);
                insert.Parameters.AddWithValue(e.AggregateId);
                insert.Parameters.AddWithValue(e.EventType);
                insert.Parameters.AddWithValue(e.Payload);
                await insert.ExecuteNonQueryAsync();
                await using (var xact = new NpgsqlCommand($"SELECT pg_replication_origin_xact_setup('0/{t + 1:X}', now())", connection, tx))
                    await xact.ExecuteNonQueryAsync();
                await tx.CommitAsync();
                written.Add(e);
            }
            await using var reset = new NpgsqlCommand("SELECT pg_replication_origin_session_reset()", connection);
            await reset.ExecuteNonQueryAsync();
        }

        // 2. Outbox inserts mixed with updates and deletes of the outbox, changes and a truncate of another published table,
        // logical messages of other prefixes (large, transactional and not) and one large event message of the prefix.
        var a = new TestEvent("order", "o-1", "A");
        var b = new TestEvent("order", "o-1", "B");
        var c = new TestEvent("order", "o-1", "C", """{"after":"truncate"}""");
        var emitted = new OutboxEvent
        {
            Id = Guid.NewGuid().ToString(), AggregateType = "order", AggregateId = "o-1", EventType = "Emitted",
            Payload = ByteString.CopyFrom(RandomBytes(150_000, 7)), PayloadContentType = "application/octet-stream",
        };
        var big = new string('m', 200_000);
        await InOneTransactionAsync(outbox.ConnectionString,
            Insert(table, a),
            Insert(table, b),
            $"UPDATE {table} SET event_type = 'A-updated', payload = jsonb_build_object('big', repeat('u', 100000)) WHERE id = '{a.Id}'",
            $"INSERT INTO {business} (note) SELECT repeat('n', 100000) FROM generate_series(1, 3)",
            $"SELECT pg_logical_emit_message(true, 'foreign.prefix', '{big}')",
            $"SELECT pg_logical_emit_message(false, '{prefix}', 'not transactional, never relayed')",
            $"SELECT pg_logical_emit_message(true, '{prefix}', decode('{Convert.ToHexString(emitted.ToByteArray())}', 'hex'))",
            $"UPDATE {business} SET note = 'changed'",
            $"DELETE FROM {business} WHERE id % 2 = 0",
            $"DELETE FROM {table} WHERE id = '{b.Id}'",
            $"TRUNCATE {business}",
            Insert(table, c));
        written.AddRange([a, b, c]);
        // 3. Transactions that touch only the other table, a truncate of the outbox itself, then one more event.
        await InOneTransactionAsync(outbox.ConnectionString,
            $"INSERT INTO {business} (note) VALUES ('x')", $"UPDATE {business} SET note = 'y'", $"TRUNCATE {business}");
        await outbox.ExecuteAsync($"TRUNCATE {table}");
        var d = new TestEvent("order", "o-1", "D");
        var lsn = await outbox.CommitAsync(d);
        written.Add(d);
        await outbox.WaitForConfirmedAsync(lsn, Timeout);

        var records = outbox.ReadTopic(outbox.Topic("order"));
        var rowRecords = records.Where(r => DeliveryAssert.Header(r, "id") != emitted.Id).ToList();
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(written, DeliveryAssert.Ids(rowRecords)));
        DeliveryAssert.FirstDeliveriesInWrittenOrder(written, rowRecords);
        // The row as inserted (the update and delete are not events).
        Assert.Equal("A", EventsById(records)[a.Id.ToString()].EventType);
        var relayedMessage = Assert.Single(records, r => DeliveryAssert.Header(r, "id") == emitted.Id);
        Assert.True(emitted.Payload.Span.SequenceEqual(OutboxEvent.Parser.ParseFrom(relayedMessage.Message.Value).Payload.Span));
        Assert.Empty(outbox.ReadTopic(outbox.DeadLetterTopic));
        Assert.True(await outbox.ConfirmedFlushLsnAsync() <= await outbox.CurrentWalLsnAsync());
        outbox.AssertRelayRunning();
        await outbox.ExecuteAsync($"SELECT pg_replication_origin_drop('{origin}')");
    }

    [Fact]
    public async Task After_a_drain_the_slot_is_confirmed_exactly_to_the_last_commits_end_and_not_past_what_was_written()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        await outbox.StartRelayAsync();
        var events = Enumerable.Range(0, 20).Select(i => new TestEvent("order", $"o-{i % 3}", $"E{i}")).ToList();
        foreach (var chunk in events.Chunk(5))
            await outbox.CommitAsync(chunk);
        // The end of the last commit record: the insert position right after the commit (nothing else is written here
        // in between by this test; other tests' WAL can only move it further).
        var end = await outbox.CurrentWalLsnAsync();
        await outbox.WaitForConfirmedAsync(end, Timeout);
        var confirmed = await outbox.ConfirmedFlushLsnAsync();
        output.WriteLine($"confirmed {new NpgsqlLogSequenceNumber(confirmed)}, last commit end <= {new NpgsqlLogSequenceNumber(end)}");
        Assert.True(confirmed >= end, "the slot did not reach the end of the last commit");
        Assert.True(confirmed <= await outbox.CurrentWalLsnAsync(), "the slot was confirmed past the server's WAL");
        Assert.Equal(0, DeliveryAssert.EveryEventOnce(events, DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic("order")))));
    }

    [Fact]
    public async Task Many_new_topics_at_once_then_idle_probes_then_stop_and_restart_on_the_shared_admin_client_lose_nothing_and_stop_promptly()
    {
        var servers = await fixture.GetAsync();
        var types = Enumerable.Range(0, 24).Select(i => $"new{i}").ToArray();
        // Topics are not created beforehand: each first record asks the (shared) admin client whether its topic exists.
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, [], configure: o => o.Relay.ShutdownTimeout = TimeSpan.FromSeconds(10));
        await outbox.StartRelayAsync();
        var first = types.Select(t => new TestEvent(t, "a", "First")).ToList();
        await outbox.WaitForConfirmedAsync(await outbox.CommitAsync([.. first]), Timeout);
        // Idle long enough for the idle Kafka probe to run on the admin client, then a graceful stop.
        await Task.Delay(TimeSpan.FromSeconds(8));
        var stopwatch = Stopwatch.StartNew();
        await outbox.StopRelayAsync();
        output.WriteLine($"stopped in {stopwatch.ElapsedMilliseconds} ms");
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"graceful stop took {stopwatch.Elapsed}");

        // A new session: a new producer and admin client; the old one's must not be used.
        var second = types.Select(t => new TestEvent(t, "a", "Second")).ToList();
        await outbox.CommitAsync([.. second]);
        await outbox.StartRelayAsync();
        await outbox.WaitForConfirmedAsync(await outbox.CurrentWalLsnAsync(), Timeout);
        foreach (var type in types)
        {
            var ids = DeliveryAssert.Ids(outbox.ReadTopic(outbox.Topic(type)));
            Assert.Equal(0, DeliveryAssert.EveryEventOnce(first.Concat(second).Where(e => e.AggregateType == type), ids));
        }
        outbox.AssertRelayRunning();
    }
    [Fact]
    public async Task The_slim_host_takes_urls_and_settings_from_the_command_line_log_levels_from_the_environment_and_serves_its_endpoints()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var environment = WorkerProcess.Environment(outbox.Options);
        environment.Remove("Cdc__Postgres__Slot"); // given on the command line instead
        environment["Logging__LogLevel__Cdc"] = "Warning"; // the relay's Information lines ("Streaming slot") are off
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var worker = WorkerProcess.Start(environment, output,
            ["dotnet", Cdc.Embedded.WorkerBinary.Path(), $"--urls=http://127.0.0.1:{port}", $"--Cdc:Postgres:Slot={outbox.Options.Postgres.Slot}"]);
        await worker.WaitForOutputAsync("Now listening on", Timeout);
        Assert.Equal($"http://127.0.0.1:{port}", worker.ListeningUrl);
        var deadline = DateTime.UtcNow + Timeout;
        while (await outbox.ConfirmedFlushLsnAsync() == 0 && DateTime.UtcNow < deadline)
            await Task.Delay(100); // the slot of the command line's name exists once it streams
        var lsn = await outbox.CommitAsync(new TestEvent("order", "o-1", "E"));
        await outbox.WaitForConfirmedAsync(lsn, Timeout);
        using var http = new HttpClient { BaseAddress = new Uri(worker.ListeningUrl), Timeout = TimeSpan.FromSeconds(10) };
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/healthz")).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("/readyz")).StatusCode);
        Assert.Contains("cdc_events_published_total", await http.GetStringAsync("/metrics"));
        Assert.DoesNotContain("Streaming slot", worker.Output);
        Assert.Single(outbox.ReadTopic(outbox.Topic("order")));
        var stop = await worker.TerminateAsync(TimeSpan.FromSeconds(20));
        output.WriteLine($"SIGTERM to exit: {stop}");
        Assert.Equal(0, worker.ExitCode);
    }
}
