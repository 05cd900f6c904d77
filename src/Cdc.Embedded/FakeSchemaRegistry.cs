using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Cdc.Embedded;

/// <summary>
/// A stand-in for Confluent's Schema Registry on loopback, for the demo and the tests: not the real server (none can be
/// installed here), only the REST subset a Confluent serializer and deserializer use, answered as the real one does
/// (content type <c>application/vnd.schemaregistry.v1+json</c>, Confluent's error codes):
/// <list type="bullet">
/// <item><c>POST /subjects/{subject}/versions</c>: registers a schema, <c>{"id":N}</c>; the same schema gets the same id
/// under any subject, as ids are global.</item>
/// <item><c>POST /subjects/{subject}</c>: looks a schema up in a subject; 404 with 40401 (no subject) or 40403 (not in it).</item>
/// <item><c>GET /subjects/{subject}/versions/latest</c> and <c>GET /schemas/ids/{id}</c>.</item>
/// </list>
/// It can require basic authentication, be stopped and started again on the same port (a registry that is down, then
/// back), and it keeps every request it answered.
/// </summary>
public sealed class FakeSchemaRegistry : IAsyncDisposable
{
    const string ContentType = "application/vnd.schemaregistry.v1+json";

    sealed record Stored(int Id, string SchemaType, string Schema);

    readonly Lock _lock = new();
    readonly List<Stored> _schemas = [];
    readonly Dictionary<string, List<int>> _subjects = new(StringComparer.Ordinal);
    WebApplication? _app;
    int _port;

    FakeSchemaRegistry(string? userInfo) => UserInfo = userInfo;

    /// <summary><c>user:password</c> the registry requires (basic authentication), or null for none.</summary>
    public string? UserInfo { get; }

    /// <summary>Where it listens, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string Url => $"http://127.0.0.1:{_port}";

    /// <summary>Every request answered, as <c>METHOD /path</c>, in order.</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>Starts one on a free loopback port.</summary>
    public static async Task<FakeSchemaRegistry> StartAsync(string? userInfo = null)
    {
        var registry = new FakeSchemaRegistry(userInfo);
        await registry.ListenAsync(0);
        return registry;
    }

    /// <summary>Stops listening: clients get connection refused, as from a registry that is down. Keeps what it stored.</summary>
    public async Task StopAsync()
    {
        if (_app is null)
            return;
        await _app.StopAsync();
        await _app.DisposeAsync();
        _app = null;
    }

    /// <summary>Listens again on the same port, with what it stored.</summary>
    public Task RestartAsync() => _app is null ? ListenAsync(_port) : Task.CompletedTask;

    /// <summary>Registers a schema under a subject as a client would (e.g. to test use-latest-version); returns its id.</summary>
    public int Register(string subject, string schema, string schemaType = "PROTOBUF")
    {
        lock (_lock)
            return RegisterLocked(subject, schema, schemaType).Id;
    }

    /// <summary>The ids registered under a subject, oldest version first.</summary>
    public IReadOnlyList<int> Versions(string subject)
    {
        lock (_lock)
            return _subjects.TryGetValue(subject, out var ids) ? [.. ids] : [];
    }

    /// <summary>The schema stored with an id, or null.</summary>
    public string? SchemaById(int id)
    {
        lock (_lock)
            return _schemas.FirstOrDefault(s => s.Id == id)?.Schema;
    }

    async Task ListenAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        var app = builder.Build();
        app.Run(HandleAsync);
        await app.StartAsync();
        _port = new Uri(app.Urls.First()).Port;
        _app = app;
    }

    async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var path = request.Path.Value ?? "";
        Requests.Enqueue($"{request.Method} {path}");
        if (UserInfo is not null && request.Headers.Authorization.ToString() != "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(UserInfo)))
        {
            await Error(context, HttpStatusCode.Unauthorized, 40101, "Unauthorized");
            return;
        }

        var parts = path.Trim('/').Split('/').Select(Uri.UnescapeDataString).ToArray();
        switch (request.Method, parts)
        {
            case ("POST", ["subjects", var subject, "versions"]):
            {
                var (schema, type) = await ReadSchemaAsync(request);
                Stored stored;
                lock (_lock)
                    stored = RegisterLocked(subject, schema, type);
                await Json(context, w => w.WriteNumber("id", stored.Id));
                return;
            }
            case ("POST", ["subjects", var subject]):
            {
                var (schema, type) = await ReadSchemaAsync(request);
                Stored? found;
                int version;
                lock (_lock)
                {
                    if (!_subjects.TryGetValue(subject, out var ids))
                    {
                        found = null;
                        version = -1;
                    }
                    else
                    {
                        found = _schemas.FirstOrDefault(s => s.Schema == schema && s.SchemaType == type && ids.Contains(s.Id));
                        version = found is null ? 0 : ids.IndexOf(found.Id) + 1;
                    }
                }
                if (version < 0)
                    await Error(context, HttpStatusCode.NotFound, 40401, $"Subject '{subject}' not found.");
                else if (found is null)
                    await Error(context, HttpStatusCode.NotFound, 40403, "Schema not found");
                else
                    await Json(context, w => WriteRegistered(w, subject, version, found));
                return;
            }
            case ("GET", ["subjects", var subject, "versions", "latest"]):
            {
                Stored? latest = null;
                var version = 0;
                lock (_lock)
                    if (_subjects.TryGetValue(subject, out var ids) && ids.Count > 0)
                    {
                        version = ids.Count;
                        latest = _schemas.First(s => s.Id == ids[^1]);
                    }
                if (latest is null)
                    await Error(context, HttpStatusCode.NotFound, 40401, $"Subject '{subject}' not found.");
                else
                    await Json(context, w => WriteRegistered(w, subject, version, latest));
                return;
            }
            case ("GET", ["schemas", "ids", var idText]) when int.TryParse(idText, out var id):
            {
                Stored? stored;
                lock (_lock)
                    stored = _schemas.FirstOrDefault(s => s.Id == id);
                if (stored is null)
                    await Error(context, HttpStatusCode.NotFound, 40403, "Schema not found");
                else
                    await Json(context, w =>
                    {
                        w.WriteString("schemaType", stored.SchemaType);
                        w.WriteString("schema", stored.Schema);
                        w.WriteStartArray("references");
                        w.WriteEndArray();
                    });
                return;
            }
            default:
                await Error(context, HttpStatusCode.NotFound, 404, $"{request.Method} {path} is not served by this fake registry");
                return;
        }
    }

    Stored RegisterLocked(string subject, string schema, string schemaType)
    {
        var stored = _schemas.FirstOrDefault(s => s.Schema == schema && s.SchemaType == schemaType);
        if (stored is null)
        {
            // Ids start past 0 and are not 1, 2, 3: a test that mixes up ids and versions notices.
            stored = new Stored(100 + _schemas.Count + 1, schemaType, schema);
            _schemas.Add(stored);
        }
        if (!_subjects.TryGetValue(subject, out var ids))
            _subjects[subject] = ids = [];
        if (!ids.Contains(stored.Id))
            ids.Add(stored.Id);
        return stored;
    }

    static void WriteRegistered(Utf8JsonWriter w, string subject, int version, Stored stored)
    {
        w.WriteString("subject", subject);
        w.WriteNumber("id", stored.Id);
        w.WriteNumber("version", version);
        w.WriteString("schemaType", stored.SchemaType);
        w.WriteString("schema", stored.Schema);
        w.WriteStartArray("references");
        w.WriteEndArray();
    }

    static async Task<(string Schema, string Type)> ReadSchemaAsync(HttpRequest request)
    {
        using var body = await JsonDocument.ParseAsync(request.Body);
        var root = body.RootElement;
        var schema = root.GetProperty("schema").GetString() ?? "";
        // The registry's default type is Avro when a request names none.
        var type = root.TryGetProperty("schemaType", out var t) && t.GetString() is { Length: > 0 } named ? named : "AVRO";
        return (schema, type);
    }

    static async Task Json(HttpContext context, Action<Utf8JsonWriter> write)
    {
        context.Response.ContentType = ContentType;
        using var buffer = new MemoryStream();
        await using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            write(writer);
            writer.WriteEndObject();
        }
        await context.Response.Body.WriteAsync(buffer.ToArray());
    }

    static Task Error(HttpContext context, HttpStatusCode status, int code, string message)
    {
        context.Response.StatusCode = (int)status;
        return Json(context, w =>
        {
            w.WriteNumber("error_code", code);
            w.WriteString("message", message);
        });
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}
