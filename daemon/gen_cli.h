/*
 * gen_cli.h -- `journeyctl gen`: options and output (file or Kafka) around
 * the simulator in gen.c.
 */
#ifndef JD_GEN_CLI_H
#define JD_GEN_CLI_H

/* argv[0] is "gen". Returns the process exit code. */
int gen_cli_main(int argc, char **argv);

#endif
