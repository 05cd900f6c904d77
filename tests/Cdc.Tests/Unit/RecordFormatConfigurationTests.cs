using Cdc.Configuration;
using Cdc.Mapping;
using Microsoft.Extensions.Configuration;

namespace Cdc.Tests.Unit;

/// <summary>The record format's keys: Schema Registry, ValueFormat, AdditionalPlacement, the optional headers column.</summary>
public class RecordFormatConfigurationTests
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
    public void Defaults_are_plain_OutboxEvent_values_without_registry_or_placements()
    {
        var kafka = Load().Kafka;
        Assert.False(kafka.SchemaRegistry.Enabled);
        Assert.Equal(SubjectNameStrategy.Topic, kafka.SchemaRegistry.SubjectNameStrategy);
        Assert.True(kafka.SchemaRegistry.Registers);
        Assert.False(kafka.SchemaRegistry.UseLatestVersion);
        Assert.Equal(ValueFormat.OutboxEvent, kafka.ValueFormat);
        Assert.Empty(AdditionalPlacement.Parse(kafka.AdditionalPlacement));
    }

    [Fact]
    public void Registry_keys_bind_and_every_other_key_of_the_section_is_a_client_property()
    {
        var registry = Load(
            ("Cdc:Kafka:SchemaRegistry:Url", "https://registry:8081"),
            ("Cdc:Kafka:SchemaRegistry:SubjectNameStrategy", "TopicRecord"),
            ("Cdc:Kafka:SchemaRegistry:UseLatestVersion", "true"),
            ("Cdc:Kafka:SchemaRegistry:basic.auth.user.info", "cdc:s3cret"),
            ("Cdc:Kafka:SchemaRegistry:schema.registry.request.timeout.ms", "2000")).Kafka.SchemaRegistry;

        Assert.True(registry.Enabled);
        Assert.Equal(SubjectNameStrategy.TopicRecord, registry.SubjectNameStrategy);
        Assert.False(registry.Registers); // use-latest without AutoRegister: nothing is registered
        Assert.Equal(new Dictionary<string, string>
        {
            ["basic.auth.user.info"] = "cdc:s3cret",
            ["schema.registry.request.timeout.ms"] = "2000",
        }, registry.Properties);
        var config = Cdc.Publishing.SchemaRegistryClients.Config(registry);
        Assert.Equal("cdc:s3cret", config.BasicAuthUserInfo);
        Assert.Equal(2000, config.RequestTimeoutMs);
    }

    [Theory]
    [InlineData("Cdc:Kafka:SchemaRegistry:Url", "http://registry:8081, cdc:s3cret@registry:8081", "Cdc:Kafka:SchemaRegistry:Url", "entry 2 of 2 is not an http:// or https:// URL")]
    [InlineData("Cdc:Kafka:ValueFormat", "Payload", "Cdc:Kafka:ValueFormat", "cannot be used with Cdc:Kafka:SchemaRegistry:Url")]
    [InlineData("Cdc:Kafka:SchemaRegistry:AutoRegister", "true", "Cdc:Kafka:SchemaRegistry:UseLatestVersion", "cannot be true with")]
    [InlineData("Cdc:Kafka:SchemaRegistry:no.such.property", "1", "Cdc:Kafka:SchemaRegistry:no.such.property", "no.such.property")]
    [InlineData("Cdc:Kafka:SchemaRegistry:basic.auth.user.info", "no-colon", "Cdc:Kafka:SchemaRegistry:basic.auth.user.info", "username:password")]
    public void Registry_settings_that_cannot_work_are_refused_naming_the_key(string key, string value, string named, string problem)
    {
        var changes = new List<(string, string?)> { ("Cdc:Kafka:SchemaRegistry:Url", "http://registry:8081"), (key, value) };
        if (named.EndsWith("UseLatestVersion", StringComparison.Ordinal))
            changes.Add(("Cdc:Kafka:SchemaRegistry:UseLatestVersion", "true"));
        var e = Assert.Throws<CdcConfigurationException>(() => Load([.. changes]));
        Assert.Equal(named, e.Key);
        Assert.Contains(problem, e.Message);
        Assert.DoesNotContain("s3cret", e.Message);
    }

    [Fact]
    public void Credentials_written_into_a_registry_URL_stay_out_of_logs()
    {
        Assert.Equal("https://***@registry:8081,http://other:8081",
            Cdc.Publishing.SchemaRegistryClients.Redacted("https://cdc:s3cret@registry:8081, http://other:8081"));
    }

    [Fact]
    public void Placements_parse_in_Debeziums_syntax()
    {
        var placements = AdditionalPlacement.Parse(" type:header:eventType , aggregatetype:header, shard:partition ", ValueFormat.Payload);
        Assert.Equal(
        [
            new Placement("type", PlacementTarget.Header, "eventType"),
            new Placement("aggregatetype", PlacementTarget.Header, "aggregatetype"),
            new Placement("shard", PlacementTarget.Partition, ""),
        ], placements);
        // event_type is the connector's own header only in the OutboxEvent format.
        Assert.Single(AdditionalPlacement.Parse("type:header:event_type", ValueFormat.Payload));
    }

    [Theory]
    [InlineData("type", "must be 'column:header'")]
    [InlineData("type:header:a:b", "must be 'column:header'")]
    [InlineData("a:header,,b:header", "must be 'column:header'")]
    [InlineData("type:envelope:eventType", "Debezium's value envelope")]
    [InlineData("type:topic", "'topic' is not a placement")]
    [InlineData("a:partition,b:partition", "more than one column")]
    [InlineData("a:partition:p", "takes no alias")]
    [InlineData("a:header:x,b:header:x", "header 'x' is placed twice")]
    [InlineData("uid:header:id", "which the connector sets itself")]
    [InlineData("type:header:event_type", "which the connector sets itself")]
    public void Placements_that_cannot_work_are_refused_naming_the_key(string value, string problem)
    {
        var e = Assert.Throws<CdcConfigurationException>(() => Load(("Cdc:Kafka:AdditionalPlacement", value)));
        Assert.Equal("Cdc:Kafka:AdditionalPlacement", e.Key);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Placements_need_a_table_and_the_headers_column_may_be_left_out()
    {
        var e = Assert.Throws<CdcConfigurationException>(() => Load(
            ("Cdc:Postgres:Table", ""), ("Cdc:Postgres:MessagePrefix", "cdc.outbox"), ("Cdc:Kafka:AdditionalPlacement", "type:header")));
        Assert.Equal("Cdc:Kafka:AdditionalPlacement", e.Key);

        Assert.Equal("", Load(("Cdc:Postgres:Columns:Headers", "")).Postgres.Columns.Headers);
        Assert.Equal("Cdc:Postgres:Columns:EventType",
            Assert.Throws<CdcConfigurationException>(() => Load(("Cdc:Postgres:Columns:EventType", ""))).Key);
    }
}
