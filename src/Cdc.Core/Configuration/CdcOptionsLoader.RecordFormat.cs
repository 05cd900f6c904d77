using Cdc.Mapping;
using Cdc.Publishing;
using Microsoft.Extensions.Configuration;

namespace Cdc.Configuration;

/// <summary>The record format's keys: <c>Cdc:Kafka:SchemaRegistry:*</c>, <c>ValueFormat</c>, <c>AdditionalPlacement</c>.</summary>
public static partial class CdcOptionsLoader
{
    const string RegistrySection = "Cdc:Kafka:SchemaRegistry";

    /// <summary>Every key of <c>Cdc:Kafka:SchemaRegistry</c> that is not one of the section's own is a client property.</summary>
    static void BindSchemaRegistryProperties(IConfiguration configuration, SchemaRegistryOptions registry)
    {
        foreach (var child in configuration.GetSection(RegistrySection).GetChildren())
            if (!SchemaRegistryOptions.OwnKeys.Contains(child.Key) && child.Value is { } value)
                registry.Properties[child.Key] = value;
    }

    static void ValidateRecordFormat(CdcOptions options)
    {
        var kafka = options.Kafka;
        var registry = kafka.SchemaRegistry;
        if (registry.Enabled)
        {
            var urls = registry.Url.Split(',', StringSplitOptions.TrimEntries);
            for (var i = 0; i < urls.Length; i++)
                if (!Uri.TryCreate(urls[i], UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                    // Not echoed: a URL may carry credentials.
                    throw new CdcConfigurationException($"{RegistrySection}:Url",
                        $"entry {i + 1} of {urls.Length} is not an http:// or https:// URL");
            if (kafka.ValueFormat == ValueFormat.Payload)
                throw new CdcConfigurationException("Cdc:Kafka:ValueFormat",
                    $"Payload cannot be used with {RegistrySection}:Url: a payload has no registered schema of ours, so its " +
                    "records cannot be framed; use ValueFormat=OutboxEvent with the registry, or unset the registry's URL");
            if (registry is { UseLatestVersion: true, AutoRegister: true })
                throw new CdcConfigurationException($"{RegistrySection}:UseLatestVersion",
                    $"cannot be true with {RegistrySection}:AutoRegister=true (as Confluent's serializers refuse both): the id is " +
                    "either registered or taken from the subject's latest version; unset AutoRegister");
            // The client checks its properties when it is built; one at a time, so the error names the key.
            foreach (var (key, value) in registry.Properties)
                SchemaRegistryClients.Check($"{RegistrySection}:{key}", registry, key, value);
        }

        var placements = AdditionalPlacement.Parse(kafka.AdditionalPlacement, kafka.ValueFormat);
        if (placements.Count > 0 && options.Postgres.OutboxTable is null)
            throw new CdcConfigurationException(AdditionalPlacement.Key,
                "names columns, but Cdc:Postgres:Table is empty: table-less mode has no columns to place");
    }
}
