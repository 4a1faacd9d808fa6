// voxd: thin entry point; the command lives in the voxd_cli library.
#include "voxd/cli/cli.hpp"

int main(int argc, char** argv) {
  return voxd::cli::run(argc, argv);
}
