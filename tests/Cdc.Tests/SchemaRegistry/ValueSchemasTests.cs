using Cdc.Configuration;
using Cdc.Contracts.SchemaRegistry;
using Cdc.Embedded;
using Cdc.Publishing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Cdc.Tests.SchemaRegistry;

/// <summary>
/// The connector's schema ids from Confluent's registry client against a fake registry on loopback (the REST subset
/// Confluent's serdes use): subject names, auto-register, use-latest, lookup, caching, a registry down and back, credentials.
/// </summary>
public class ValueSchemasTests
{
    static RegistryValueSchemas Schemas(FakeSchemaRegistry registry, Action<SchemaRegistryOptions>? configure = null)
    {
        var options = new SchemaRegistryOptions { Url = registry.Url };
        configure?.Invoke(options);
        return new RegistryValueSchemas(options, NullLogger.Instance);
    }

    static string Schema => OutboxEventFraming.Schema().SchemaString;

    [Theory]
    [InlineData(SubjectNameStrategy.Topic, "orders-value")]
    [InlineData(SubjectNameStrategy.Record, "cdc.outbox.v1.OutboxEvent")]
    [InlineData(SubjectNameStrategy.TopicRecord, "orders-cdc.outbox.v1.OutboxEvent")]
    public async Task Each_strategy_registers_under_the_subject_Confluents_serializers_use(SubjectNameStrategy strategy, string subject)
    {
        await using var registry = await FakeSchemaRegistry.StartAsync();
        using var schemas = Schemas(registry, o => o.SubjectNameStrategy = strategy);

        var resolved = await schemas.ResolveAsync("orders", CancellationToken.None);

        Assert.Equal(SchemaResolution.Resolved, resolved.Resolution);
        Assert.Equal(subject, resolved.Subject);
        var id = Assert.Single(registry.Versions(subject));
        Assert.Equal(OutboxEventFraming.Prefix(id), resolved.Prefix);
        Assert.Equal(Schema, registry.SchemaById(id));
    }

    [Fact]
    public async Task Ids_are_asked_for_once_per_subject()
    {
        await using var registry = await FakeSchemaRegistry.StartAsync();
        using var topics = Schemas(registry);
        using var records = Schemas(registry, o => o.SubjectNameStrategy = SubjectNameStrategy.Record);

        foreach (var topic in new[] { "a", "b", "a", "b", "a" })
        {
            await topics.ResolveAsync(topic, CancellationToken.None);
            await records.ResolveAsync(topic, CancellationToken.None);
        }

        // Two topic subjects, one record subject: three requests. The same schema has one id whatever the subject.
        Assert.Equal(3, registry.Requests.Count);
        Assert.True(topics.TryGetCached("a", out var a) && topics.TryGetCached("b", out var b) && a.SequenceEqual(b));
        Assert.False(topics.TryGetCached("c", out _));
    }

    [Fact]
    public async Task Use_latest_version_takes_the_subjects_latest_id_and_registers_nothing()
    {
        await using var registry = await FakeSchemaRegistry.StartAsync();
        var ours = registry.Register("orders-value", Schema);
        var latest = registry.Register("orders-value", "a later version, registered by someone else");
        using var schemas = Schemas(registry, o => o.UseLatestVersion = true);

        var resolved = await schemas.ResolveAsync("orders", CancellationToken.None);
        var missing = await schemas.ResolveAsync("payments", CancellationToken.None);

        Assert.NotEqual(ours, latest);
        Assert.Equal(OutboxEventFraming.Prefix(latest), resolved.Prefix);
        Assert.Equal([ours, latest], registry.Versions("orders-value"));
        Assert.Equal(SchemaResolution.Refused, missing.Resolution);
        Assert.Contains("no latest version", missing.Problem);
        Assert.DoesNotContain(registry.Requests, r => r.StartsWith("POST", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Without_auto_register_the_schema_is_looked_up_and_its_topic_waits_until_someone_registers_it()
    {
        await using var registry = await FakeSchemaRegistry.StartAsync();
        using var schemas = Schemas(registry, o => o.AutoRegister = false);

        var before = await schemas.ResolveAsync("orders", CancellationToken.None);
        Assert.Equal(SchemaResolution.Refused, before.Resolution);
        Assert.Contains("40401", before.Problem);
        Assert.Empty(registry.Versions("orders-value"));

        var id = registry.Register("orders-value", Schema);
        var after = await schemas.ResolveAsync("orders", CancellationToken.None);
        Assert.Equal(OutboxEventFraming.Prefix(id), after.Prefix);
        Assert.All(registry.Requests, r => Assert.Equal("POST /subjects/orders-value", r));
    }

    [Fact]
    public async Task A_registry_that_is_down_is_unreachable_until_it_is_back()
    {
        await using var registry = await FakeSchemaRegistry.StartAsync();
        using var schemas = Schemas(registry);
        await registry.StopAsync();

        var down = await schemas.ResolveAsync("orders", CancellationToken.None);
        Assert.Equal(SchemaResolution.Unreachable, down.Resolution);
        Assert.Null(down.Prefix);

        await registry.RestartAsync();
        var back = await schemas.ResolveAsync("orders", CancellationToken.None);
        Assert.Equal(SchemaResolution.Resolved, back.Resolution);
        Assert.Equal(OutboxEventFraming.Prefix(Assert.Single(registry.Versions("orders-value"))), back.Prefix);
    }

    [Fact]
    public async Task Credentials_are_passed_to_the_client_and_refused_ones_stop_the_worker()
    {
        await using var registry = await FakeSchemaRegistry.StartAsync(userInfo: "cdc:s3cret");
        using var right = Schemas(registry, o => o.Properties["basic.auth.user.info"] = "cdc:s3cret");
        using var wrong = Schemas(registry, o => o.Properties["schema.registry.basic.auth.user.info"] = "cdc:wrong");

        Assert.Equal(SchemaResolution.Resolved, (await right.ResolveAsync("orders", CancellationToken.None)).Resolution);
        var refused = await wrong.ResolveAsync("payments", CancellationToken.None);
        Assert.Equal(SchemaResolution.Fatal, refused.Resolution);
        Assert.Contains("basic.auth.user.info", refused.Problem);
    }
}
