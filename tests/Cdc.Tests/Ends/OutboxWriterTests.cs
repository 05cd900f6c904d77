using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Cdc.Outbox;
using Cdc.Outbox.V1;
using Cdc.Tests.Fixtures;
using Google.Protobuf.WellKnownTypes;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.Ends;

/// <summary>The writer against a real PostgreSQL: rows as the contract describes them, in the caller's transaction.</summary>
public class OutboxWriterTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task AddAsync_writes_one_row_with_the_contract_columns_in_the_callers_transaction()
    {
        var servers = await fixture.GetAsync();
        var options = await CreateTableAsync(servers);
        var writer = new OutboxWriter(options);
        var message = OutboxMessage.Json("order", "order-42", "OrderPlaced", new { OrderId = 42, Total = 19.5m });
        message.Headers["tenant"] = "acme";

        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await writer.AddAsync(tx, message);
            // Not visible outside the transaction before it commits.
            Assert.Equal(0L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString, $"SELECT count(*) FROM {options.Table}"));
            await tx.CommitAsync();
        }

        await using var read = new NpgsqlCommand(
            $"SELECT id, aggregate_type, aggregate_id, event_type, payload::text, headers::text, created_at, now() FROM {options.Table}", connection);
        await using var row = await read.ExecuteReaderAsync();
        Assert.True(await row.ReadAsync());
        Assert.Equal(message.Id, row.GetGuid(0));
        Assert.Equal(7, message.Id.Version); // time-ordered ids keep the primary key index appending
        Assert.Equal("order", row.GetString(1));
        Assert.Equal("order-42", row.GetString(2));
        Assert.Equal("OrderPlaced", row.GetString(3));
        Assert.Equal("""{"total": 19.5, "orderId": 42}""", row.GetString(4)); // web defaults: camelCase; jsonb orders keys
        Assert.Equal("""{"tenant": "acme"}""", row.GetString(5)); // no content-type: a jsonb payload is JSON by definition
        Assert.InRange(row.GetDateTime(7) - row.GetDateTime(6), TimeSpan.Zero, TimeSpan.FromMinutes(1)); // the column default
        Assert.False(await row.ReadAsync());
    }

    [Fact]
    public async Task AddRangeAsync_writes_a_batch_with_one_binary_COPY_keeping_order_and_explicit_created_at()
    {
        var servers = await fixture.GetAsync();
        var options = await CreateTableAsync(servers);
        var writer = new OutboxWriter(options);
        var happened = new DateTimeOffset(2024, 5, 1, 12, 30, 0, TimeSpan.FromHours(2));
        var messages = Enumerable.Range(0, 2_000).Select(i =>
            new OutboxMessage("customer", $"c-{i % 10}", "CustomerUpdated", OutboxPayload.JsonText($$"""{"seq":{{i}}}"""))
            {
                CreatedAt = i % 100 == 0 ? happened : null,
            }).ToList();

        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        var watch = Stopwatch.StartNew();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await writer.AddRangeAsync(tx, messages);
            await tx.CommitAsync();
        }
        output.WriteLine($"{messages.Count} events written in {watch.ElapsedMilliseconds} ms");

        // A fresh heap table without updates keeps rows in insertion order.
        var rows = new List<(Guid Id, int Seq, DateTime CreatedAt)>();
        await using (var read = new NpgsqlCommand($"SELECT id, (payload->>'seq')::int, created_at FROM {options.Table} ORDER BY ctid", connection))
        await using (var reader = await read.ExecuteReaderAsync())
            while (await reader.ReadAsync())
                rows.Add((reader.GetGuid(0), reader.GetInt32(1), reader.GetDateTime(2)));
        Assert.Equal(messages.Select(m => m.Id), rows.Select(r => r.Id));
        Assert.Equal(Enumerable.Range(0, messages.Count), rows.Select(r => r.Seq));
        Assert.All(rows.Where(r => r.Seq % 100 == 0), r => Assert.Equal(happened.UtcDateTime, r.CreatedAt));
        Assert.All(rows.Where(r => r.Seq % 100 != 0), r => Assert.InRange(r.CreatedAt, DateTime.UtcNow.AddMinutes(-5), DateTime.UtcNow.AddMinutes(1)));
    }

    [Fact]
    public async Task The_current_Activity_trace_context_goes_into_the_headers_unless_the_message_sets_its_own()
    {
        var servers = await fixture.GetAsync();
        var options = await CreateTableAsync(servers);
        var writer = new OutboxWriter(options);
        const string explicitParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

        using var activity = new Activity("PlaceOrder").SetIdFormat(ActivityIdFormat.W3C);
        activity.TraceStateString = "vendor=abc";
        activity.Start();
        var traced = OutboxMessage.Json("order", "o-1", "OrderPlaced", new { });
        var explicitTrace = OutboxMessage.Json("order", "o-2", "OrderPlaced", new { });
        explicitTrace.Headers["traceparent"] = explicitParent;
        await WriteAsync(servers, writer, traced, explicitTrace);
        activity.Stop();
        var untraced = OutboxMessage.Json("order", "o-3", "OrderPlaced", new { });
        await WriteAsync(servers, writer, untraced);

        var headers = await HeadersByIdAsync(servers, options.Table);
        Assert.Equal(activity.Id, headers[traced.Id]["traceparent"]);
        Assert.Equal("vendor=abc", headers[traced.Id]["tracestate"]);
        // An explicit traceparent is kept, and is not paired with the ambient trace's state.
        Assert.Equal(explicitParent, headers[explicitTrace.Id]["traceparent"]);
        Assert.False(headers[explicitTrace.Id].ContainsKey("tracestate"));
        Assert.Empty(headers[untraced.Id]);
        // The caller's dictionary is left as it was.
        Assert.False(traced.Headers.ContainsKey("traceparent"));
    }

    [Fact]
    public async Task A_bytes_payload_for_a_jsonb_column_is_refused_before_anything_is_written()
    {
        var servers = await fixture.GetAsync();
        var options = await CreateTableAsync(servers);
        var writer = new OutboxWriter(options);
        var json = OutboxMessage.Json("order", "o-1", "OrderPlaced", new { });
        var bytes = new OutboxMessage("order", "o-1", "OrderShipped", OutboxPayload.FromBytes(new byte[] { 1, 2, 3 }));

        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var error = await Assert.ThrowsAsync<ArgumentException>(() => writer.AddRangeAsync(tx, [json, bytes]));
        output.WriteLine(error.Message);
        Assert.Contains("jsonb", error.Message);
        Assert.Contains("PayloadColumnType = Bytea", error.Message);
        Assert.Contains(bytes.Id.ToString(), error.Message);

        // Header names the connector sets itself would make a second, ambiguous record header.
        var reserved = OutboxMessage.Json("order", "o-1", "OrderPlaced", new { });
        reserved.Headers["id"] = "mine";
        Assert.Contains("'id'", (await Assert.ThrowsAsync<ArgumentException>(() => writer.AddAsync(tx, reserved))).Message);

        // The transaction is still usable and nothing of the batch was written.
        await writer.AddAsync(tx, json);
        await tx.CommitAsync();
        Assert.Equal(1L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString, $"SELECT count(*) FROM {options.Table}"));

        await Assert.ThrowsAsync<InvalidOperationException>(() => writer.AddAsync(tx, json)); // after commit
    }

    [Fact]
    public void Options_and_payloads_are_checked_up_front()
    {
        Assert.Contains("Table", Assert.Throws<ArgumentException>(() => new OutboxWriter(new OutboxWriterOptions { Table = "a.b.c" })).Message);
        Assert.Contains("Columns.Payload",
            Assert.Throws<ArgumentException>(() => new OutboxWriter(new OutboxWriterOptions { Columns = { Payload = " " } })).Message);
        Assert.Contains("MessagePrefix", Assert.Throws<ArgumentException>(() => new OutboxWriter(new OutboxWriterOptions { MessagePrefix = "" })).Message);
        Assert.Contains("not valid JSON", Assert.Throws<ArgumentException>(() => OutboxPayload.JsonText("{nope")).Message);
        Assert.Throws<ArgumentException>(() => new OutboxMessage(" ", "a", "E", OutboxPayload.JsonText("{}")));

        Assert.True(OutboxPayload.FromBytes(Encoding.UTF8.GetBytes("{}"), "application/cloudevents+json").IsJson);
        var proto = OutboxPayload.Protobuf(Timestamp.FromDateTime(DateTime.UnixEpoch));
        Assert.Equal("application/x-protobuf; messageType=google.protobuf.Timestamp", proto.ContentType);
        Assert.False(proto.IsJson);
    }

    [Fact]
    public void The_DDL_helper_follows_the_contract_and_the_column_options()
    {
        Assert.Equal("""
            CREATE TABLE IF NOT EXISTS "public"."outbox" (
              "id" uuid PRIMARY KEY,
              "aggregate_type" text NOT NULL,
              "aggregate_id" text NOT NULL,
              "event_type" text NOT NULL,
              "payload" jsonb NOT NULL,
              "headers" jsonb,
              "created_at" timestamptz NOT NULL DEFAULT now()
            );
            """, OutboxSchema.CreateTableSql());
        var custom = OutboxSchema.CreateTableSql(new OutboxWriterOptions
        {
            Table = "billing.Events",
            PayloadColumnType = PayloadColumnType.Bytea,
            Columns = { Id = "event_id", Payload = "body" },
        });
        Assert.Contains("\"billing\".\"Events\"", custom);
        Assert.Contains("\"event_id\" uuid PRIMARY KEY", custom);
        Assert.Contains("\"body\" bytea NOT NULL", custom);
    }

    /// <summary>A table from <see cref="OutboxSchema.CreateTableSql"/>, relayed by the connector configured with the same names.</summary>
    [Theory]
    [InlineData("jsonb", false, false)]
    [InlineData("jsonb", false, true)]
    [InlineData("bytea", true, false)]
    public async Task The_DDL_helpers_table_is_accepted_by_the_connector_and_the_event_arrives_as_written(
        string payloadType, bool customColumnNames, bool deleteAfterInsert)
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("d");
        var writerOptions = new OutboxWriterOptions
        {
            Table = $"public.{name}_events",
            PayloadColumnType = payloadType == "bytea" ? PayloadColumnType.Bytea : PayloadColumnType.Jsonb,
            DeleteAfterInsert = deleteAfterInsert,
        };
        if (customColumnNames)
            writerOptions.Columns = new Contracts.OutboxColumns
            {
                Id = "event_id", AggregateType = "stream", AggregateId = "stream_key", EventType = "kind",
                Payload = "body", Headers = "meta", CreatedAt = "occurred_at",
            };
        await Sql.ExecuteAsync(servers.PostgresConnectionString, OutboxSchema.CreateTableSql(writerOptions));
        var relayOptions = InProcessRelay.OptionsFor(servers, name, writerOptions.Table, o =>
            o.Postgres.Columns = writerOptions.Columns); // the same names on both sides
        await servers.CreateTopicAsync(relayOptions.Kafka.TopicTemplate.Replace("{aggregate_type}", "shipment"), partitions: 2);
        await servers.CreateTopicAsync(relayOptions.Kafka.DeadLetterTopic, partitions: 1);
        await using var relay = await InProcessRelay.StartAsync(relayOptions, output);

        var payload = payloadType == "bytea"
            ? OutboxPayload.Protobuf(Timestamp.FromDateTime(new DateTime(2025, 1, 2, 3, 4, 5, DateTimeKind.Utc)))
            : OutboxPayload.Json(new { Carrier = "DHL", Parcels = 2 });
        var message = new OutboxMessage("shipment", "s-7", "ShipmentDispatched", payload) { Headers = { ["tenant"] = "acme" } };
        await WriteAsync(servers, new OutboxWriter(writerOptions), message);
        await relay.WaitForCaughtUpAsync(Timeout);

        var record = Assert.Single(KafkaReader.ReadAll(servers.KafkaBootstrapServers, relay.Topic("shipment")));
        Assert.Equal("s-7", Encoding.UTF8.GetString(record.Message.Key));
        Assert.Equal(message.Id.ToString(), Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes("id")));
        var evt = OutboxEvent.Parser.ParseFrom(record.Message.Value);
        Assert.Equal(message.Id.ToString(), evt.Id);
        Assert.Equal("ShipmentDispatched", evt.EventType);
        Assert.Equal("acme", evt.Headers["tenant"]);
        if (payloadType == "bytea")
        {
            // The content type travels in the headers, where the connector reads it for bytea payloads.
            Assert.Equal(payload.ContentType, evt.PayloadContentType);
            Assert.Equal(payload.Bytes.ToArray(), evt.Payload.ToByteArray());
        }
        else
        {
            Assert.Equal("application/json", evt.PayloadContentType);
            Assert.Equal("DHL", JsonDocument.Parse(evt.Payload.Memory).RootElement.GetProperty("carrier").GetString());
        }
        var rowsLeft = await Sql.ScalarAsync<long>(servers.PostgresConnectionString, $"SELECT count(*) FROM {writerOptions.Table}");
        Assert.Equal(deleteAfterInsert ? 0L : 1L, rowsLeft);
        Assert.Empty(KafkaReader.ReadAll(servers.KafkaBootstrapServers, relayOptions.Kafka.DeadLetterTopic));
    }

    async Task<OutboxWriterOptions> CreateTableAsync(TestServers servers)
    {
        var options = new OutboxWriterOptions { Table = $"public.{TestNames.Unique("w")}_outbox" };
        await Sql.ExecuteAsync(servers.PostgresConnectionString, OutboxSchema.CreateTableSql(options));
        return options;
    }

    static async Task WriteAsync(TestServers servers, OutboxWriter writer, params OutboxMessage[] messages)
    {
        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await writer.AddRangeAsync(tx, messages);
        await tx.CommitAsync();
    }

    static async Task<Dictionary<Guid, Dictionary<string, string>>> HeadersByIdAsync(TestServers servers, string table)
    {
        await using var connection = new NpgsqlConnection(servers.PostgresConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"SELECT id, coalesce(headers, '{{}}')::text FROM {table}", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var result = new Dictionary<Guid, Dictionary<string, string>>();
        while (await reader.ReadAsync())
            result[reader.GetGuid(0)] = JsonSerializer.Deserialize<Dictionary<string, string>>(reader.GetString(1))!;
        return result;
    }
}
