using Cdc.Configuration;
using Cdc.Publishing;
using Confluent.Kafka;
using Microsoft.Extensions.Configuration;

namespace Cdc.Tests.Unit;

public class ConfigurationTests
{
    static readonly Dictionary<string, string?> Valid = new()
    {
        ["Cdc:Postgres:ConnectionString"] = "Host=db;Username=cdc;Password=s3cret;Database=app",
        ["Cdc:Kafka:BootstrapServers"] = "kafka:9092",
    };

    static CdcOptions Load(params (string Key, string? Value)[] changes)
    {
        var values = new Dictionary<string, string?>(Valid);
        foreach (var (key, value) in changes)
            values[key] = value;
        return CdcOptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
    }

    [Fact]
    public void Defaults_follow_the_contract()
    {
        var options = Load();
        Assert.Equal("public.outbox", options.Postgres.Table);
        Assert.Equal("cdc_outbox", options.Postgres.Slot);
        Assert.Equal("cdc_outbox", options.Postgres.Publication);
        Assert.Equal("outbox.event.{aggregate_type}", options.Kafka.TopicTemplate);
        Assert.Equal("outbox.dlq", options.Kafka.DeadLetterTopic);
    }

    [Theory]
    [InlineData("Cdc:Postgres:ConnectionString", null, "is required")]
    [InlineData("Cdc:Postgres:ConnectionString", "Host=db;Nonsense Key=1", "not a valid Npgsql connection string")]
    [InlineData("Cdc:Kafka:BootstrapServers", "", "is required")]
    [InlineData("Cdc:Postgres:Table", "a.b.c", "must be 'schema.table'")]
    [InlineData("Cdc:Postgres:Slot", "Bad-Slot", "lower-case PostgreSQL identifier")]
    [InlineData("Cdc:Postgres:Publication", "", "is required")]
    [InlineData("Cdc:Kafka:TopicTemplate", "events/{aggregate_type}", "valid Kafka topic name")]
    [InlineData("Cdc:Kafka:DeadLetterTopic", "dead letters", "valid Kafka topic name")]
    [InlineData("Cdc:Relay:MaxInFlightEvents", "0", "at least 1")]
    [InlineData("Cdc:Relay:MaxInFlightEvents", "many", "many")]
    public void Invalid_configuration_names_the_key(string key, string? value, string problem)
    {
        var e = Assert.Throws<CdcConfigurationException>(() => Load((key, value)));
        Assert.Equal(key, e.Key);
        Assert.StartsWith($"{key} (env {key.Replace(":", "__")})", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Table_less_mode_needs_a_message_prefix()
    {
        Assert.Null(Load(("Cdc:Postgres:Table", ""), ("Cdc:Postgres:MessagePrefix", "cdc.outbox")).Postgres.OutboxTable);
        var e = Assert.Throws<CdcConfigurationException>(() => Load(("Cdc:Postgres:Table", "")));
        Assert.Equal("Cdc:Postgres:Table", e.Key);
    }

    [Fact]
    public void The_password_never_appears_in_configuration_errors()
    {
        var e = Assert.Throws<CdcConfigurationException>(() =>
            Load(("Cdc:Postgres:ConnectionString", "Host=db;Password=hunter2;Bogus=1")));
        Assert.DoesNotContain("hunter2", e.ToString());
    }

    [Fact]
    public void Producer_overrides_are_passed_as_is_after_the_defaults()
    {
        var options = Load(("Cdc:Kafka:Producer:message.timeout.ms", "3000"), ("Cdc:Kafka:Producer:linger.ms", "50"));
        var config = KafkaRecordProducer.ProducerConfig(options.Kafka);
        Assert.Equal(3000, config.MessageTimeoutMs);
        Assert.Equal(50, config.LingerMs);
        Assert.True(config.EnableIdempotence);
        Assert.Equal(Acks.All, config.Acks);
        Assert.Equal(Partitioner.Murmur2Random, config.Partitioner);
        Assert.Equal("kafka:9092", config.BootstrapServers);
    }

    [Theory]
    [InlineData(ErrorCode.NoError, false, DeliveryOutcome.Acknowledged)]
    [InlineData(ErrorCode.MsgSizeTooLarge, false, DeliveryOutcome.RetryAlone)]
    [InlineData(ErrorCode.MsgSizeTooLarge, true, DeliveryOutcome.TooLarge)]
    [InlineData(ErrorCode.RecordListTooLarge, false, DeliveryOutcome.RetryAlone)]
    [InlineData(ErrorCode.Local_InvalidDifferentRecord, false, DeliveryOutcome.RetryAlone)]
    [InlineData(ErrorCode.Local_InvalidDifferentRecord, true, DeliveryOutcome.Rejected)]
    [InlineData(ErrorCode.InvalidRecord, false, DeliveryOutcome.RetryAlone)]
    [InlineData(ErrorCode.InvalidRecord, true, DeliveryOutcome.Rejected)]
    [InlineData(ErrorCode.InvalidTimestamp, true, DeliveryOutcome.Rejected)]
    [InlineData(ErrorCode.UnknownTopicOrPart, false, DeliveryOutcome.UnknownTopic)]
    [InlineData(ErrorCode.Local_UnknownTopic, true, DeliveryOutcome.UnknownTopic)]
    [InlineData(ErrorCode.Local_UnknownPartition, false, DeliveryOutcome.Rejected)]
    [InlineData(ErrorCode.Local_PurgeQueue, false, DeliveryOutcome.Purged)]
    [InlineData(ErrorCode.Local_PurgeInflight, false, DeliveryOutcome.Purged)]
    [InlineData(ErrorCode.TopicAuthorizationFailed, false, DeliveryOutcome.Fatal)]
    [InlineData(ErrorCode.SaslAuthenticationFailed, false, DeliveryOutcome.Fatal)]
    [InlineData(ErrorCode.Local_MsgTimedOut, false, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.NotEnoughReplicas, false, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.NotLeaderForPartition, false, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.Local_AllBrokersDown, false, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.Local_Fatal, false, DeliveryOutcome.Retry)]
    public void Delivery_errors_are_classified(ErrorCode code, bool alone, DeliveryOutcome outcome) =>
        Assert.Equal(outcome, DeliveryErrors.Classify(code, alone));

    [Fact]
    public void Every_error_code_has_a_decided_outcome_and_none_drops_an_event_silently()
    {
        foreach (var code in Enum.GetValues<ErrorCode>())
        foreach (var alone in new[] { false, true })
        {
            var outcome = DeliveryErrors.Classify(code, alone);
            Assert.True(Enum.IsDefined(outcome), $"{code}: {outcome}");
            // Only NoError acknowledges: every other code is retried, dead-lettered, waited for or stops the worker.
            Assert.Equal(code == ErrorCode.NoError, outcome == DeliveryOutcome.Acknowledged);
        }
    }

    [Fact]
    public void An_in_flight_bound_above_the_producers_queue_is_refused_naming_both_keys()
    {
        var e = Assert.Throws<CdcConfigurationException>(() =>
            Load(("Cdc:Relay:MaxInFlightEvents", "5000"), ("Cdc:Kafka:Producer:queue.buffering.max.messages", "1000")));
        Assert.Equal("Cdc:Relay:MaxInFlightEvents", e.Key);
        Assert.Contains("queue.buffering.max.messages (1000)", e.Message);
        e = Assert.Throws<CdcConfigurationException>(() => Load(("Cdc:Relay:MaxInFlightEvents", "200000")));
        Assert.Contains("queue.buffering.max.messages (100000)", e.Message);
        e = Assert.Throws<CdcConfigurationException>(() =>
            Load(("Cdc:Relay:MaxInFlightBytes", "10000000"), ("Cdc:Kafka:Producer:queue.buffering.max.kbytes", "1024")));
        Assert.Equal("Cdc:Relay:MaxInFlightBytes", e.Key);
    }
}
