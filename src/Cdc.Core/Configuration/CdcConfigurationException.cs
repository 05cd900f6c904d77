namespace Cdc.Configuration;

/// <summary>Configuration that cannot work: the worker stops at start with this message, which names the key.</summary>
public sealed class CdcConfigurationException(string key, string problem, Exception? inner = null)
    : Exception($"{key} (env {key.Replace(":", "__")}): {problem}", inner)
{
    /// <summary>The configuration key, in <c>Cdc:Section:Name</c> form.</summary>
    public string Key { get; } = key;
}
