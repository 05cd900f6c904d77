using Cdc.Configuration;
using Cdc.Worker;
using Cdc.Worker.Demo;

NativeLibraries.ResolveForNativeBuild(); // before anything touches Confluent.Kafka (the demo's mock cluster too)

if (args.Length > 0 && args[0] == "demo")
    return await DemoCommand.RunAsync(args[1..]);

WebApplication app;
try
{
    app = CdcHost.Build(args);
}
catch (CdcConfigurationException e)
{
    Console.Error.WriteLine($"cdc: invalid configuration: {e.Message}");
    return 2;
}

var failure = app.Services.GetRequiredService<StartupFailure>();
await app.RunAsync();
if (failure.Message is not null)
{
    Console.Error.WriteLine($"cdc: stopped: {failure.Message}");
    return 1;
}
return 0;
