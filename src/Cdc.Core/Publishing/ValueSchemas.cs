using System.Collections.Concurrent;
using System.Net;
using Cdc.Configuration;
using Cdc.Contracts.SchemaRegistry;
using Confluent.Kafka;
using Confluent.SchemaRegistry;
using Microsoft.Extensions.Logging;
using ConfluentStrategy = Confluent.SchemaRegistry.SubjectNameStrategy;

namespace Cdc.Publishing;

/// <summary>What the registry said about a topic's subject.</summary>
public enum SchemaResolution
{
    /// <summary>The schema id is known: values can be framed.</summary>
    Resolved,
    /// <summary>The registry could not be asked (down, timed out, 5xx): the topic's events wait and it is asked again.</summary>
    Unreachable,
    /// <summary>The registry answered no (subject or schema not found, incompatible, invalid): the events wait until it says yes.</summary>
    Refused,
    /// <summary>The registry refused our credentials: no retry fixes that, the worker stops.</summary>
    Fatal,
}

/// <summary>A topic's value schema as the registry gave it: the framing prefix, or why there is none now.</summary>
public readonly record struct ValueSchema(SchemaResolution Resolution, byte[]? Prefix, string Subject, string? Problem = null);

/// <summary>Resolves the schema id each topic's values are framed with (the publisher asks when it first sees a topic).</summary>
public interface IValueSchemas
{
    /// <summary>The prefix of a topic whose subject was resolved before (no request).</summary>
    bool TryGetCached(string topic, out byte[] prefix);

    /// <summary>Asks the registry for the topic's subject unless its id is cached. Never throws for the registry's answers.</summary>
    Task<ValueSchema> ResolveAsync(string topic, CancellationToken ct);
}

/// <summary>
/// <see cref="IValueSchemas"/> over Confluent's <see cref="CachedSchemaRegistryClient"/>: the subject of a topic by the
/// configured strategy (Confluent's own, <c>ToAsyncDelegate</c>), then the id of <c>outbox_event.proto</c> under
/// it: registered on first use (AutoRegister, the default), the subject's latest version (UseLatestVersion), or looked
/// up (neither). Ids are cached per subject for the life of the process: the registry is asked once per subject.
/// Whether the registry answers is logged once per change, not per topic or attempt.
/// </summary>
public sealed class RegistryValueSchemas : IValueSchemas, IDisposable
{
    readonly SchemaRegistryOptions _options;
    readonly CachedSchemaRegistryClient _client;
    readonly ILogger _logger;
    readonly Schema _schema = OutboxEventFraming.Schema();
    readonly AsyncSubjectNameStrategyDelegate _subjectOf;
    readonly ConcurrentDictionary<string, byte[]> _bySubject = new(StringComparer.Ordinal);
    readonly ConcurrentDictionary<string, byte[]> _byTopic = new(StringComparer.Ordinal);
    int _reachable = 1; // until told otherwise

    public RegistryValueSchemas(SchemaRegistryOptions options, ILogger logger)
    {
        _options = options;
        _logger = logger;
        var config = SchemaRegistryClients.Config(options);
        _client = new CachedSchemaRegistryClient(config);
        _subjectOf = (options.SubjectNameStrategy switch
        {
            Configuration.SubjectNameStrategy.Record => ConfluentStrategy.Record,
            Configuration.SubjectNameStrategy.TopicRecord => ConfluentStrategy.TopicRecord,
            _ => ConfluentStrategy.Topic,
        }).ToAsyncDelegate(_client, config);
    }

    /// <summary>The resolver for the configured registry, or null when none is configured.</summary>
    public static RegistryValueSchemas? For(KafkaOptions options, ILogger logger) =>
        options.SchemaRegistry.Enabled ? new RegistryValueSchemas(options.SchemaRegistry, logger) : null;

    /// <summary>The topic's value subject under the configured strategy, as Confluent's serializers name it.</summary>
    public Task<string> SubjectAsync(string topic) =>
        _subjectOf(new SerializationContext(MessageComponentType.Value, topic), OutboxEventFraming.RecordName);

    public bool TryGetCached(string topic, out byte[] prefix) => _byTopic.TryGetValue(topic, out prefix!);

    public async Task<ValueSchema> ResolveAsync(string topic, CancellationToken ct)
    {
        var subject = await SubjectAsync(topic);
        if (_bySubject.TryGetValue(subject, out var cached))
        {
            _byTopic[topic] = cached;
            return new ValueSchema(SchemaResolution.Resolved, cached, subject);
        }
        try
        {
            var id = await IdAsync(subject).WaitAsync(ct);
            var prefix = _bySubject.GetOrAdd(subject, OutboxEventFraming.Prefix(id));
            _byTopic[topic] = prefix;
            if (Interlocked.Exchange(ref _reachable, 1) == 0)
                _logger.LogInformation("The Schema Registry answers again: relaying the events that waited for their schema id");
            _logger.LogInformation("Values on {Topic} are framed with schema id {Id} (subject {Subject})", topic, id, subject);
            return new ValueSchema(SchemaResolution.Resolved, prefix, subject);
        }
        catch (SchemaRegistryException e) when (e.Status is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            return new ValueSchema(SchemaResolution.Fatal, null, subject,
                $"The Schema Registry at {SchemaRegistryClients.Redacted(_options.Url)} refused the connector ({(int)e.Status}: {e.Message}) for subject {subject}. " +
                "Check Cdc:Kafka:SchemaRegistry:basic.auth.user.info (or the bearer settings) and the subject's permissions.");
        }
        catch (SchemaRegistryException e) when ((int)e.Status is >= 400 and < 500 and not 408 and not 429)
        {
            // Reachable: the answer is about the subject (not found, incompatible, invalid). An operator can fix it
            // in the registry; the events wait for that.
            return new ValueSchema(SchemaResolution.Refused, null, subject, $"{Describe(subject)}: {(int)e.Status} {e.Message} (error code {e.ErrorCode})");
        }
        catch (Exception e) when (e is HttpRequestException or SchemaRegistryException or TimeoutException
                                      or TaskCanceledException or IOException && !ct.IsCancellationRequested)
        {
            if (Interlocked.Exchange(ref _reachable, 0) == 1)
                _logger.LogWarning(
                    "The Schema Registry at {Url} is unreachable ({Message}). Events of topics whose schema id is not known yet " +
                    "wait (the slot is not confirmed past them); asking again with backoff", SchemaRegistryClients.Redacted(_options.Url),
                    e.GetBaseException().Message);
            return new ValueSchema(SchemaResolution.Unreachable, null, subject, $"Schema Registry unreachable: {e.GetBaseException().Message}");
        }
    }

    async Task<int> IdAsync(string subject)
    {
        if (_options.UseLatestVersion)
            return (await _client.GetLatestSchemaAsync(subject)).Id;
        if (_options.Registers)
            return await _client.RegisterSchemaAsync(subject, _schema, normalize: false);
        // As Confluent's serializers look up when they do not register.
        return (await _client.LookupSchemaAsync(subject, _schema, ignoreDeletedSchemas: false, normalize: false)).Id;
    }

    string Describe(string subject) => _options.UseLatestVersion
        ? $"the subject {subject} has no latest version to use (UseLatestVersion)"
        : _options.Registers
            ? $"the Schema Registry would not register outbox_event.proto under subject {subject}"
            : $"outbox_event.proto is not registered under subject {subject} (AutoRegister=false)";

    public void Dispose() => _client.Dispose();
}

/// <summary>The Confluent.SchemaRegistry client configuration of <c>Cdc:Kafka:SchemaRegistry</c>.</summary>
public static class SchemaRegistryClients
{
    const string Prefix = "schema.registry.";

    /// <summary>
    /// The URL, the connector's defaults, then every configured property as is (the <c>schema.registry.</c> prefix
    /// added where it was left out, as Java clients' <c>basic.auth.user.info</c> is written).
    /// </summary>
    public static SchemaRegistryConfig Config(SchemaRegistryOptions options)
    {
        var config = new SchemaRegistryConfig
        {
            Url = options.Url,
            // As long as the topic checks' admin requests: a registry that does not answer is retried by the publisher.
            RequestTimeoutMs = 10_000,
        };
        foreach (var (key, value) in options.Properties)
            config.Set(Qualified(key), value);
        // Credentials given without a source mean user info, as in Confluent's Java clients.
        if (config.BasicAuthUserInfo is { Length: > 0 } && config.Get(SchemaRegistryConfig.PropertyNames.SchemaRegistryBasicAuthCredentialsSource) is null)
            config.BasicAuthCredentialsSource = AuthCredentialsSource.UserInfo;
        return config;
    }

    /// <summary>The URL(s) for logs and messages: credentials written into a URL (<c>https://user:password@host</c>) left out.</summary>
    public static string Redacted(string urls) => string.Join(",", urls.Split(',', StringSplitOptions.TrimEntries).Select(url =>
        Uri.TryCreate(url, UriKind.Absolute, out var uri) && uri.UserInfo.Length > 0 ? url.Replace(uri.UserInfo + "@", "***@") : url));

    static string Qualified(string key) => key.StartsWith(Prefix, StringComparison.Ordinal) ? key : Prefix + key;

    /// <summary>Builds a client with the URL and one property, so that what the client refuses is reported with its key.</summary>
    internal static void Check(string configurationKey, SchemaRegistryOptions options, string key, string value)
    {
        try
        {
            var single = new SchemaRegistryOptions { Url = options.Url, Properties = { [key] = value } };
            using var client = new CachedSchemaRegistryClient(Config(single));
        }
        catch (ArgumentException e)
        {
            throw new CdcConfigurationException(configurationKey, e.Message, e);
        }
    }
}
