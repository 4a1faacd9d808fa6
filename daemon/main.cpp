// voxd-daemon: thin entry point; all logic lives in the voxd_daemon library.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>

#include "voxd/common/config.hpp"
#include "voxd/daemon/daemon.hpp"

int main(int argc, char** argv) {
  CLI::App app{"voxd-daemon: fetches models from Hub origins into the Hugging Face cache"};
  std::string config_path;
  bool check_only = false, print_default = false, print_reference = false;
  app.add_option("-c,--config", config_path, "YAML configuration file");
  app.add_flag("--check-config", check_only,
               "Validate the configuration and exit (non-zero on errors)");
  app.add_flag("--print-default-config", print_default,
               "Print a commented configuration with every default");
  app.add_flag("--print-config-reference", print_reference,
               "Print the configuration reference (Markdown)");
  std::string man_page;
  app.add_option("--print-man", man_page, "Print a man page: voxd-daemon.8 or voxd.yaml.5");
  CLI11_PARSE(app, argc, argv);

  if (!man_page.empty()) {
    const auto text = voxd::render_man_page(man_page);
    if (text.empty()) {
      std::cerr << "voxd-daemon: no man page '" << man_page
                << "' (known: voxd-daemon.8, voxd.yaml.5)\n";
      return static_cast<int>(voxd::errc::usage);
    }
    std::cout << text;
    return 0;
  }

  if (print_default) {
    std::cout << voxd::render_default_config();
    return 0;
  }
  if (print_reference) {
    std::cout << voxd::render_config_reference();
    return 0;
  }
  std::vector<voxd::config_error> errors;
  auto cfg = config_path.empty() ? voxd::result<voxd::config>(voxd::default_config())
                                 : voxd::load_config(config_path, errors);
  if (!cfg) {
    for (const auto& e : errors)
      std::cerr << e.format() << "\n";
    return static_cast<int>(voxd::errc::config);
  }
  voxd::finalize_config(*cfg);
  if (check_only) {
    std::cout << (config_path.empty() ? "defaults" : config_path) << ": ok\n";
    return 0;
  }

  auto logger = spdlog::stderr_color_mt("voxd");
  spdlog::set_default_logger(logger);
  // Under systemd the journal adds its own timestamps.
  spdlog::set_pattern(std::getenv("JOURNAL_STREAM") ? "<%l> %v" : "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));
  std::signal(SIGPIPE, SIG_IGN);
  try {
    voxd::daemon d(std::move(*cfg), config_path);
    return d.run();
  } catch (const std::exception& e) {
    spdlog::critical("cannot start: {}", e.what());
    return static_cast<int>(voxd::errc::failure);
  }
}
