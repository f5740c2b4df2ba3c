// The /metrics endpoint: the registry in Prometheus' text format, over
// HTTP, or HTTPS with server.tls (the certificate gRPC serves, re-read when
// its files change, so a rotated certificate is served without a restart;
// a client certificate signed by tls.client_ca required when that is set).
//
//   absl::StatusOr<std::unique_ptr<MetricsServer>> m =
//       MetricsServer::Start("127.0.0.1:9187", registry, inventory.server.tls);
//   ...                      // serves until destroyed
#ifndef LOCKSTEP_DAEMON_METRICS_METRICS_SERVER_H_
#define LOCKSTEP_DAEMON_METRICS_METRICS_SERVER_H_

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "config/inventory.h"

namespace httplib {
class Server;
}
namespace prometheus {
class Registry;
}

namespace lockstep::daemon {

class MetricsServer {
 public:
  // Binds `listen` ("host:port") now, so that a taken port is an error at
  // start; serves on a thread of its own (two workers) until destroyed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry,
      const std::optional<config::TlsConfig>& tls);
  ~MetricsServer();

  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

 private:
  struct Certificates;
  MetricsServer() = default;

  std::shared_ptr<Certificates> certificates_;  // with TLS: what the handshakes present
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_METRICS_METRICS_SERVER_H_
