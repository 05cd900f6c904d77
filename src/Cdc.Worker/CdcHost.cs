using System.Text.Json;
using System.Text.Json.Serialization;
using Cdc.Configuration;
using Cdc.Relay;
using Cdc.Telemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Cdc.Worker;

/// <summary>Wires the worker: configuration, the relay, health endpoints and telemetry. No logic of its own.</summary>
static class CdcHost
{
    public const string DefaultUrls = "http://0.0.0.0:8080";

    /// <summary>Points per metric stream: above every instrument's tag sets (at most 200 topics and "_other").</summary>
    internal const int MetricCardinalityLimit = 256;

    /// <summary>Builds the host; throws <see cref="CdcConfigurationException"/> when the configuration cannot work.</summary>
    public static WebApplication Build(string[] args, IDictionary<string, string?>? overrides = null)
    {
        // The slim builder: what the worker uses (configuration, logging, Kestrel over HTTP) without the full one's HTTPS,
        // IIS integration, static web assets and hosting startup assemblies, which cost start time and idle memory.
        var builder = WebApplication.CreateSlimBuilder(args);
        if (overrides is not null)
            builder.Configuration.AddInMemoryCollection(overrides);
        if (string.IsNullOrEmpty(builder.Configuration["urls"]))
            builder.WebHost.UseUrls(DefaultUrls);

        var options = CdcOptionsLoader.Load(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<RelayStatus>();
        builder.Services.AddSingleton<StartupFailure>();
        builder.Services.AddSingleton(sp => new CdcMetrics(sp.GetRequiredService<RelayStatus>()));
        builder.Services.AddSingleton<OutboxRelay>();
        builder.Services.AddHostedService<RelayService>();
        // Source-generated JSON for what the endpoints write (no reflection: the same in the JIT and NativeAOT builds).
        builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, WorkerJsonContext.Default));
        // The relay needs up to its own shutdown timeout to let in-flight events be acknowledged, then confirms.
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = options.Relay.ShutdownTimeout + TimeSpan.FromSeconds(4));

        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
        });

        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("cdc-outbox"))
            .WithMetrics(m => m.AddMeter(CdcMetrics.MeterName)
                // The SDK preallocates a stream's points up to its cardinality limit (2,000 by default), about 3 MB for the
                // connector's instruments, all on the large-object heap; none has more than 201 tag sets (CdcMetrics counts
                // topics past 200 as "_other").
                .AddView("*", new MetricStreamConfiguration { CardinalityLimit = MetricCardinalityLimit })
                .AddPrometheusExporter());
        // Spans are only recorded when there is somewhere to send them.
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
            otel.WithMetrics(m => m.AddOtlpExporter())
                .WithTracing(t => t.AddSource(OutboxTracing.SourceName).AddOtlpExporter());

        var app = builder.Build();
        app.MapGet("/healthz", () => Results.Ok("ok"));
        app.MapGet("/readyz", (RelayStatus status) => status.Ready
            ? Results.Ok("ready")
            : Results.Json(new NotReady(status.Streaming, status.KafkaReachable), WorkerJsonContext.Default.NotReady, statusCode: 503));
        app.MapPrometheusScrapingEndpoint("/metrics");
        return app;
    }
}

/// <summary>The body of a 503 from /readyz: which part of the job is not being done.</summary>
sealed record NotReady(bool Streaming, bool KafkaReachable);

/// <summary>Every type the worker's endpoints serialize, with ASP.NET Core's web defaults (camelCase).</summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(NotReady))]
[JsonSerializable(typeof(string))]
partial class WorkerJsonContext : JsonSerializerContext;
