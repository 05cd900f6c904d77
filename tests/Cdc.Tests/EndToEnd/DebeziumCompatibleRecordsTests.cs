using System.Text;
using System.Text.Json.Nodes;
using Cdc.Configuration;
using Cdc.Contracts;
using Cdc.Mapping;
using Cdc.Outbox.V1;
using Cdc.Replication;
using Cdc.Tests.Fixtures;
using Confluent.Kafka;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// A Debezium Outbox Event Router user's table (its default column names <c>aggregatetype</c>, <c>aggregateid</c>,
/// <c>type</c>, <c>payload</c>; no headers column) relayed with <c>ValueFormat=Payload</c> and Debezium's placement syntax:
/// the records a router's consumers read (payload value, <c>id</c> header, placed columns), real PostgreSQL and the
/// Kafka-protocol test broker.
/// </summary>
public class DebeziumCompatibleRecordsTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>Debezium's example outbox table, plus created_at (which this connector needs) and columns to place.</summary>
    static string Table(string table) => $"""
        CREATE TABLE {table} (
          id            uuid         NOT NULL PRIMARY KEY,
          aggregatetype varchar(255) NOT NULL,
          aggregateid   varchar(255) NOT NULL,
          type          varchar(255) NOT NULL,
          payload       jsonb,
          created_at    timestamptz  NOT NULL DEFAULT now(),
          shard         int,
          tenant        text,
          flagged       boolean,
          amount        numeric
        );
        """;

    static CdcOptions Options(TestServers servers, string name, string table, string placement) =>
        InProcessRelay.OptionsFor(servers, name, table, o =>
        {
            o.Postgres.Columns = new OutboxColumns { AggregateType = "aggregatetype", AggregateId = "aggregateid", EventType = "type", Headers = "" };
            o.Kafka.ValueFormat = ValueFormat.Payload;
            o.Kafka.AdditionalPlacement = placement;
        });

    sealed record Row(string AggregateId, string Type, string Payload, int? Shard, string? Tenant, bool Flagged)
    {
        public Guid Id { get; } = Guid.NewGuid();
    }

    [Fact]
    public async Task A_Debezium_outbox_table_gives_payload_values_with_the_id_header_placed_headers_and_placed_partitions()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("dbz");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, Table(table));
        var options = Options(servers, name, table, "type:header:eventType, tenant:header, flagged:header, created_at:header:createdAt, shard:partition");
        await servers.CreateTopicAsync($"{name}.order", partitions: 3);
        await servers.CreateTopicAsync(options.Kafka.DeadLetterTopic, partitions: 1);
        await using var relay = await InProcessRelay.StartAsync(options, output);

        Row[] rows =
        [
            new("o-1", "OrderPlaced", """{"total": 12.5, "lines": [1, 2]}""", 2, "acme", true),
            new("o-1", "OrderPaid", """{"amount": 12.5}""", 2, null, false),
            new("o-2", "OrderPlaced", """{"total": 3}""", 0, "globex", false),
            new("o-3", "Negative", "{}", -1, "acme", false),
            new("o-4", "NoShard", "{}", null, "acme", false),
        ];
        await using (var connection = new NpgsqlConnection(servers.PostgresConnectionString))
        {
            await connection.OpenAsync();
            await using var tx = await connection.BeginTransactionAsync();
            foreach (var row in rows)
            {
                await using var insert = new NpgsqlCommand(
                    $"INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload, shard, tenant, flagged, amount, created_at) " +
                    "VALUES ($1, 'order', $2, $3, $4::jsonb, $5, $6, $7, 1.5, '2026-11-30T10:00:00.123456Z')", connection, tx);
                insert.Parameters.AddWithValue(row.Id);
                insert.Parameters.AddWithValue(row.AggregateId);
                insert.Parameters.AddWithValue(row.Type);
                insert.Parameters.AddWithValue(row.Payload);
                insert.Parameters.AddWithValue((object?)row.Shard ?? DBNull.Value);
                insert.Parameters.AddWithValue((object?)row.Tenant ?? DBNull.Value);
                insert.Parameters.AddWithValue(row.Flagged);
                await insert.ExecuteNonQueryAsync();
            }
            await tx.CommitAsync();
        }
        await relay.WaitForCaughtUpAsync(Timeout);

        var records = KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order").ToDictionary(r => Header(r, "id")!);
        Assert.Equal(3, records.Count);
        foreach (var row in rows.Take(3))
        {
            var record = records[row.Id.ToString()];
            // The value is the payload itself, as jsonb renders it; the key the aggregate id.
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(row.Payload), JsonNode.Parse(record.Message.Value)));
            Assert.Equal(row.AggregateId, Encoding.UTF8.GetString(record.Message.Key));
            Assert.Equal(["id", "eventType", "tenant", "flagged", "createdAt"], record.Message.Headers.Select(h => h.Key));
            Assert.Equal(row.Type, Header(record, "eventType"));
            Assert.Equal(row.Tenant, Header(record, "tenant")); // NULL: a header without value
            Assert.Equal(row.Flagged ? "true" : "false", Header(record, "flagged"));
            Assert.Equal("2026-11-30T10:00:00.123456Z", Header(record, "createdAt"));
            Assert.Equal(row.Shard, record.Partition.Value);
        }

        // Rows whose partition column is not a partition are dead letters, as OutboxEvents.
        var dead = KafkaReader.ReadAll(servers.KafkaBootstrapServers, options.Kafka.DeadLetterTopic).ToDictionary(r => Header(r, "id")!);
        Assert.Equal(2, dead.Count);
        Assert.Contains("partition column shard is -1", Header(dead[rows[3].Id.ToString()], "error"));
        Assert.Contains("partition column shard is NULL", Header(dead[rows[4].Id.ToString()], "error"));
        var deadEvent = OutboxEvent.Parser.ParseFrom(dead[rows[3].Id.ToString()].Message.Value);
        Assert.Equal("Negative", deadEvent.EventType);
        Assert.Equal("o-3", deadEvent.AggregateId);
    }

    [Theory]
    [InlineData("nosuch:header", "has no column 'nosuch'")]
    [InlineData("amount:header", "is numeric; a placed column must be one of")]
    [InlineData("tenant:partition", "the partition column must be smallint, integer or bigint")]
    public async Task A_placement_the_table_cannot_give_is_refused_at_start_naming_the_key(string placement, string problem)
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("dbzbad");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, Table(table));
        var options = Options(servers, name, table, placement);

        var e = await Assert.ThrowsAsync<CdcConfigurationException>(() => OutboxSlot.CheckServerAsync(options.Postgres, NullLogger.Instance,
            CancellationToken.None, AdditionalPlacement.Parse(options.Kafka.AdditionalPlacement, options.Kafka.ValueFormat)));
        Assert.Equal("Cdc:Kafka:AdditionalPlacement", e.Key);
        Assert.Contains(problem, e.Message);
        // Refused before anything was created.
        Assert.Equal(0L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString,
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", options.Postgres.Slot));
    }

    static string? Header(ConsumeResult<byte[], byte[]> record, string name) =>
        record.Message.Headers.TryGetLastBytes(name, out var value) ? value is null ? null : Encoding.UTF8.GetString(value) : "(absent)";
}
