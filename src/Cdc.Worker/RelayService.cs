using Cdc.Configuration;
using Cdc.Relay;
using Cdc.Replication;

namespace Cdc.Worker;

/// <summary>Hosts the relay; a problem no retry fixes stops the application with a non-zero exit code.</summary>
sealed class RelayService(OutboxRelay relay, IHostApplicationLifetime lifetime, ILogger<RelayService> logger, StartupFailure failure)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            await relay.RunAsync(stoppingToken);
        }
        catch (Exception e) when (e is CdcStartupException or CdcConfigurationException)
        {
            logger.LogCritical("Stopping: {Problem}", e.Message);
            failure.Message = e.Message;
            lifetime.StopApplication();
        }
    }
}

/// <summary>Why the worker stopped on its own, if it did; decides the exit code.</summary>
sealed class StartupFailure
{
    public string? Message { get; set; }
}
