using Xunit.Abstractions;

namespace Cdc.Tests.Fixtures;

/// <summary>Gives a test class the shared servers and says once per run which ones they are.</summary>
public sealed class ServersFixture(IMessageSink sink)
{
    public Task<TestServers> GetAsync() => TestServers.GetAsync(sink);
}
