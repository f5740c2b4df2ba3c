#include "client/online_common.h"

#include <grpcpp/support/client_interceptor.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/json_writer.h"
#include "client/offline_commands.h"

namespace lockstep::client {

std::string Server(const CliArgs& args) {
  if (auto s = args.Option("server")) return *s;
  if (const char* env = std::getenv("LOCKSTEP_SERVER"); env && *env) return env;
  return "127.0.0.1:50051";
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const CliArgs& args) {
  auto setting = [&](const char* option, const char* env) -> std::string {
    if (auto v = args.Option(option)) return *v;
    const char* e = std::getenv(env);
    return e ? e : "";
  };
  const std::string ca = setting("tls-ca", "LOCKSTEP_TLS_CA");
  const std::string cert = setting("tls-cert", "LOCKSTEP_TLS_CERT");
  const std::string key = setting("tls-key", "LOCKSTEP_TLS_KEY");
  if (ca.empty()) {
    if (!cert.empty() || !key.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert and --tls-key need --tls-ca (the CA that "
          "signed lockstepd's certificate)");
    }
    return grpc::InsecureChannelCredentials();
  }
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError("give --tls-cert and --tls-key together");
  }
  grpc::SslCredentialsOptions options;
  for (auto [path, out] :
       {std::pair{&ca, &options.pem_root_certs}, std::pair{&cert, &options.pem_cert_chain},
        std::pair{&key, &options.pem_private_key}}) {
    if (path->empty()) continue;
    std::ifstream in(*path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in || text.str().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read ", *path));
    }
    *out = text.str();
  }
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::string> Token(const CliArgs& args) {
  if (auto file = args.Option("token-file")) {
    std::ifstream in(*file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      return absl::InvalidArgumentError(absl::StrCat("--token-file: cannot read ", *file));
    }
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (line.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-file: ", *file, " holds no token on its first line"));
    }
    return line;
  }
  const char* env = std::getenv("LOCKSTEP_TOKEN");
  return std::string(env ? env : "");
}

namespace {

// Adds the bearer token to every call's initial metadata.
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string& header) : header_(header) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", header_});
    }
    methods->Proceed();
  }

 private:
  const std::string& header_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(const std::string& token) : header_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(header_);
  }

 private:
  const std::string header_;  // outlives every interceptor: the channel owns the factory
};

}  // namespace

std::shared_ptr<grpc::Channel> OpenChannel(const std::string& server,
                                           std::shared_ptr<grpc::ChannelCredentials> credentials,
                                           const std::string& token) {
  if (token.empty()) return grpc::CreateChannel(server, credentials);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<TokenInterceptorFactory>(token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      server, credentials, grpc::ChannelArguments(), std::move(factories));
}

int Fail(Context& c, const std::string& message) {
  c.err << "FAILED: " << message << "\n";
  if (c.json) c.out << JsonWriter().BeginObject().Key("error").String(message).EndObject().Finish();
  return kExitError;
}

int RpcFailure(Context& c, const grpc::Status& s) {
  // gRPC's own connection failures; lockstepd's UNAVAILABLE (a database it
  // cannot reach, a shutdown) keeps its message.
  const std::string& m = s.error_message();
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (m.find("failed to connect") != std::string::npos ||
       m.find("Connection refused") != std::string::npos ||
       m.find("Socket closed") != std::string::npos ||
       m.find("Connection reset") != std::string::npos)) {
    return Fail(c, absl::StrCat("cannot reach lockstepd at ", c.server, " (", s.error_message(),
                                "); is it running? (--server / LOCKSTEP_SERVER)"));
  }
  return Fail(c, s.error_message());
}

std::string Plural(long n, const std::string& noun) {
  return absl::StrCat(n, " ", noun, n == 1 ? "" : "s");
}

int CallFailure(Context& c, const grpc::Status& s, int seconds) {
  if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return Fail(c, absl::StrCat("lockstepd at ", c.server, " did not answer within ", seconds,
                                " s (", s.error_message(), ")"));
  }
  return RpcFailure(c, s);
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

void PrintTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                const std::vector<std::vector<std::string>>& shown) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (size_t n = 0; n < rows.size(); ++n) {
    for (size_t i = 0; i < rows[n].size(); ++i) {
      out << shown[n][i];
      if (i + 1 < rows[n].size()) out << std::string(width[i] - rows[n][i].size() + 2, ' ');
    }
    out << "\n";
  }
}

std::chrono::system_clock::time_point Deadline(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

}  // namespace lockstep::client
