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
        var config = KafkaPublisher.ProducerConfig(options.Kafka);
        Assert.Equal(3000, config.MessageTimeoutMs);
        Assert.Equal(50, config.LingerMs);
        Assert.True(config.EnableIdempotence);
        Assert.Equal(Acks.All, config.Acks);
        Assert.Equal(Partitioner.Murmur2Random, config.Partitioner);
        Assert.Equal("kafka:9092", config.BootstrapServers);
    }

    [Theory]
    [InlineData(ErrorCode.NoError, DeliveryOutcome.Acknowledged)]
    [InlineData(ErrorCode.MsgSizeTooLarge, DeliveryOutcome.DeadLetter)]
    [InlineData(ErrorCode.InvalidRecord, DeliveryOutcome.DeadLetter)]
    [InlineData(ErrorCode.TopicAuthorizationFailed, DeliveryOutcome.Fatal)]
    [InlineData(ErrorCode.SaslAuthenticationFailed, DeliveryOutcome.Fatal)]
    [InlineData(ErrorCode.Local_MsgTimedOut, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.NotEnoughReplicas, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.NotLeaderForPartition, DeliveryOutcome.Retry)]
    [InlineData(ErrorCode.Local_AllBrokersDown, DeliveryOutcome.Retry)]
    public void Delivery_errors_are_classified(ErrorCode code, DeliveryOutcome outcome) =>
        Assert.Equal(outcome, DeliveryErrors.Classify(new Error(code)));
}
