using Cdc.Configuration;
using Microsoft.Extensions.Configuration;

namespace Cdc.Tests.Unit;

/// <summary>Cdc:Postgres:Mode and Cdc:Postgres:Polling:*: defaults, and every invalid setting stops the worker naming its key.</summary>
public class PollingConfigurationTests
{
    static CdcOptions Load(params (string Key, string? Value)[] changes)
    {
        var values = new Dictionary<string, string?>
        {
            ["Cdc:Postgres:ConnectionString"] = "Host=db;Username=cdc;Password=s3cret;Database=app",
            ["Cdc:Kafka:BootstrapServers"] = "kafka:9092",
        };
        foreach (var (key, value) in changes)
            values[key] = value;
        return CdcOptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(values).Build());
    }

    [Fact]
    public void Defaults_follow_the_contract()
    {
        var options = Load();
        Assert.Equal(RelayMode.Replication, options.Postgres.Mode);
        Assert.Equal(TimeSpan.FromMilliseconds(500), options.Postgres.Polling.Interval);
        Assert.Equal(1000, options.Postgres.Polling.BatchSize);
    }

    [Fact]
    public void The_environment_form_of_the_keys_binds()
    {
        var options = CdcOptionsLoader.Load(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Cdc__Postgres__ConnectionString"] = "Host=db",
            ["Cdc__Kafka__BootstrapServers"] = "kafka:9092",
            ["Cdc__Postgres__Mode"] = "Polling",
            ["Cdc__Postgres__Polling__Interval"] = "00:00:02",
            ["Cdc__Postgres__Polling__BatchSize"] = "250",
        }.ToDictionary(kv => kv.Key.Replace("__", ":"), kv => kv.Value)).Build());
        Assert.Equal(RelayMode.Polling, options.Postgres.Mode);
        Assert.Equal(TimeSpan.FromSeconds(2), options.Postgres.Polling.Interval);
        Assert.Equal(250, options.Postgres.Polling.BatchSize);
    }

    [Theory]
    [InlineData("Cdc:Postgres:Mode", "Poll", "Poll")]
    [InlineData("Cdc:Postgres:Polling:Interval", "0", "must be positive")]
    [InlineData("Cdc:Postgres:Polling:Interval", "soon", "soon")]
    [InlineData("Cdc:Postgres:Polling:BatchSize", "0", "at least 1")]
    [InlineData("Cdc:Postgres:Polling:BatchSize", "-5", "at least 1")]
    [InlineData("Cdc:Postgres:MessagePrefix", "cdc.outbox", "only in the WAL")]
    [InlineData("Cdc:Postgres:Retention", "7.00:00:00", "deletes every row once Kafka acknowledged it")]
    public void Invalid_polling_configuration_names_the_key(string key, string value, string problem)
    {
        var e = Assert.Throws<CdcConfigurationException>(() => Load(("Cdc:Postgres:Mode", "Polling"), (key, value)));
        Assert.Equal(key, e.Key);
        Assert.StartsWith($"{key} (env {key.Replace(":", "__")})", e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Polling_needs_a_table()
    {
        var e = Assert.Throws<CdcConfigurationException>(() =>
            Load(("Cdc:Postgres:Mode", "Polling"), ("Cdc:Postgres:Table", ""), ("Cdc:Postgres:MessagePrefix", "cdc.outbox")));
        Assert.Equal("Cdc:Postgres:Table", e.Key);
    }

    [Fact]
    public void Polling_settings_are_not_checked_in_replication_mode_and_table_less_mode_still_works_there()
    {
        var options = Load(("Cdc:Postgres:Polling:BatchSize", "0"), ("Cdc:Postgres:Table", ""), ("Cdc:Postgres:MessagePrefix", "cdc.outbox"));
        Assert.Equal(RelayMode.Replication, options.Postgres.Mode);
    }
}
