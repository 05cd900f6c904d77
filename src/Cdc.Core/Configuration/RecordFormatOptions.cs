namespace Cdc.Configuration;

/// <summary>What a record's value is (<c>Cdc:Kafka:ValueFormat</c>).</summary>
public enum ValueFormat
{
    /// <summary>The Protobuf <c>cdc.outbox.v1.OutboxEvent</c> (the default).</summary>
    OutboxEvent,
    /// <summary>
    /// Debezium's Outbox Event Router's records: the value is the payload itself (jsonb as its JSON text in UTF-8, bytea
    /// as its bytes), headers <c>id</c>, the additional placements and the row's headers. Dead letters stay OutboxEvents.
    /// </summary>
    Payload,
}

/// <summary>How a value's subject is named in the Schema Registry (Confluent's subject name strategies).</summary>
public enum SubjectNameStrategy
{
    /// <summary><c>&lt;topic&gt;-value</c>.</summary>
    Topic,
    /// <summary><c>cdc.outbox.v1.OutboxEvent</c>, whatever the topic.</summary>
    Record,
    /// <summary><c>&lt;topic&gt;-cdc.outbox.v1.OutboxEvent</c>.</summary>
    TopicRecord,
}

/// <summary>
/// <c>Cdc:Kafka:SchemaRegistry</c>: with <see cref="Url"/> set, every value is framed in Confluent's wire format with the id
/// of <c>outbox_event.proto</c> under the topic's subject.
/// </summary>
public sealed class SchemaRegistryOptions
{
    /// <summary>The registry's URL(s), comma-separated; empty: values are plain Protobuf.</summary>
    public string Url { get; set; } = "";

    public SubjectNameStrategy SubjectNameStrategy { get; set; } = SubjectNameStrategy.Topic;

    /// <summary>Register the schema under a subject on first use. Unset: true, unless <see cref="UseLatestVersion"/> is.</summary>
    public bool? AutoRegister { get; set; }

    /// <summary>Use the id of the subject's latest registered version, registering nothing.</summary>
    public bool UseLatestVersion { get; set; }

    /// <summary>
    /// Confluent.SchemaRegistry client properties (<c>Cdc:Kafka:SchemaRegistry:&lt;property&gt;</c>, e.g.
    /// <c>basic.auth.user.info</c>, <c>ssl.ca.location</c>; the <c>schema.registry.</c> prefix is optional), as configured.
    /// Filled by <see cref="CdcOptionsLoader.Load"/> from the keys of the section that are not the properties above.
    /// </summary>
    public Dictionary<string, string> Properties { get; set; } = new(StringComparer.Ordinal);

    public bool Enabled => !string.IsNullOrWhiteSpace(Url);

    /// <summary>Whether the schema is registered on first use (the default), rather than looked up or taken as the latest version.</summary>
    public bool Registers => AutoRegister ?? !UseLatestVersion;

    /// <summary>The names of this section's own keys: every other key is a client property.</summary>
    internal static readonly HashSet<string> OwnKeys = new(StringComparer.OrdinalIgnoreCase)
        { nameof(Url), nameof(SubjectNameStrategy), nameof(AutoRegister), nameof(UseLatestVersion), nameof(Properties) };
}
