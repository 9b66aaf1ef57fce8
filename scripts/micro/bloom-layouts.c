/* The two bloom filter layouts of docs/FORMAT.md side by side, outside the engine: table
 * format 1's whole-array double hashing against table format 2's cache-local lines, at
 * the engine's 10 bits per key and 6 probes; half the probes are keys present, half
 * random. It measures the layouts' memory behaviour, which is what chose format 2.
 *
 *   cc -O2 -o bloom-layouts scripts/micro/bloom-layouts.c && ./bloom-layouts 10000000
 */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
static uint64_t sm(uint64_t *s){uint64_t z=(*s+=0x9E3779B97F4A7C15ULL);z=(z^(z>>30))*0xBF58476D1CE4E5B9ULL;z=(z^(z>>27))*0x94D049BB133111EBULL;return z^(z>>31);}
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  long n=argc>1?atol(argv[1]):10000000; if(n<1||n>1000000000L){fprintf(stderr,"keys: 1 to 1e9\n");return 2;} int k=6;
  uint64_t *h=malloc(n*8); uint64_t s=1; for(long i=0;i<n;i++) h[i]=sm(&s);
  /* whole */
  long bytes=(n*10+7)/8; uint8_t *w=calloc(bytes,1); uint64_t bits=bytes*8;
  for(long i=0;i<n;i++){uint64_t x=h[i],d=(x>>33)|(x<<31);for(int j=0;j<k;j++){uint64_t b=x%bits;w[b>>3]|=1<<(b&7);x+=d;}}
  long lines=(n*10+511)/512; uint8_t *l=calloc(lines*64,1);
  for(long i=0;i<n;i++){uint64_t x=h[i];long line=(long)(((x&0xffffffffULL)*(uint64_t)lines)>>32)*64;uint64_t p=x>>32;for(int j=0;j<k;j++){p*=0x9E3779B97F4A7C15ULL;int b=p>>55;l[line+(b>>3)]|=1<<(b&7);}}
  long q=5000000; uint64_t *probe=malloc(q*8); uint64_t s2=7; for(long i=0;i<q;i++) probe[i]= (i&1)? h[sm(&s2)%n] : sm(&s2);
  for(int round=0;round<2;round++){
  double t0=now(); long hits=0;
  for(long i=0;i<q;i++){uint64_t x=probe[i],d=(x>>33)|(x<<31);int ok=1;for(int j=0;j<k;j++){uint64_t b=x%bits;if(!(w[b>>3]&(1<<(b&7)))){ok=0;break;}x+=d;}hits+=ok;}
  double t1=now(); long hits2=0;
  for(long i=0;i<q;i++){uint64_t x=probe[i];long line=(long)(((x&0xffffffffULL)*(uint64_t)lines)>>32)*64;uint64_t p=x>>32;int ok=1;for(int j=0;j<k;j++){p*=0x9E3779B97F4A7C15ULL;int b=p>>55;if(!(l[line+(b>>3)]&(1<<(b&7)))){ok=0;break;}}hits2+=ok;}
  double t2=now();
  printf("n=%ld filter %.1f MiB: whole %.1f ns/probe (pass %ld), local %.1f ns/probe (pass %ld)\n",n,bytes/1048576.0,(t1-t0)/q*1e9,hits,(t2-t1)/q*1e9,hits2);}
  return 0;}
