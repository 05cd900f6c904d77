using System.Text;
using Cdc.Configuration;
using Cdc.Contracts;
using Cdc.Tests.Fixtures;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// Adversarial review of issue 13's Debezium-compatible records: placements with values Kafka cannot take. Each test
/// shows a problem of the code it was written against.
/// </summary>
public class RecordFormatAdversaryTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    /// <summary>
    /// A <c>:partition</c> placement whose value is a partition number the topic does not have (7 on a 3-partition topic)
    /// is an error no retry fixes for that one record: the contract dead-letters it and moves on, as the mapper already
    /// does for negative and NULL values. librdkafka answers Local_UnknownPartition, which the publisher classifies as an
    /// unknown topic: the topic exists, so it is "open" again at once, and the record never resolves; the stream stops
    /// confirming behind it.
    /// </summary>
    [Fact]
    public async Task A_partition_placement_past_the_topics_partitions_is_dead_lettered_and_the_stream_moves_on()
    {
        var servers = await fixture.GetAsync();
        var name = TestNames.Unique("dbzp");
        var table = $"public.{name}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} (
              id uuid NOT NULL PRIMARY KEY, aggregatetype text NOT NULL, aggregateid text NOT NULL, type text NOT NULL,
              payload jsonb, created_at timestamptz NOT NULL DEFAULT now(), shard int);
            """);
        var options = InProcessRelay.OptionsFor(servers, name, table, o =>
        {
            o.Postgres.Columns = new OutboxColumns { AggregateType = "aggregatetype", AggregateId = "aggregateid", EventType = "type", Headers = "" };
            o.Kafka.ValueFormat = ValueFormat.Payload;
            o.Kafka.AdditionalPlacement = "shard:partition";
        });
        await servers.CreateTopicAsync($"{name}.order", partitions: 3);
        await servers.CreateTopicAsync(options.Kafka.DeadLetterTopic, partitions: 1);
        await using var relay = await InProcessRelay.StartAsync(options, output);

        var outOfRange = Guid.NewGuid();
        var next = Guid.NewGuid();
        foreach (var (id, shard) in new[] { (outOfRange, 7), (next, 1) })
            await Sql.ExecuteAsync(servers.PostgresConnectionString,
                $"INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload, shard) VALUES ('{id}', 'order', 'o-1', 'E', '{{}}', {shard})");
        await relay.WaitForCaughtUpAsync(Timeout);

        Assert.Contains(next.ToString(), DeliveryAssert.Ids(KafkaReader.ReadAll(servers.KafkaBootstrapServers, $"{name}.order")));
        var dead = KafkaReader.ReadAll(servers.KafkaBootstrapServers, options.Kafka.DeadLetterTopic);
        Assert.Equal([outOfRange.ToString()], DeliveryAssert.Ids(dead));
    }
}
